// A real `kamicore serve` for the tests (one worker on free ports of 127.0.0.1, over a fresh data
// dir), the CLI next to it, and a TCP proxy that can lose a reply. Like tests/server_harness.py.
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { strict as assert } from "node:assert";
import { randomBytes } from "node:crypto";
import { Client, ClientOptions, catalog } from "../src";
import { CodeState } from "../gen/kamicore/v1/common";
import { GetStockResponse } from "../gen/kamicore/v1/inventory";

export const HOST = "127.0.0.1";
export const REPO = path.resolve(__dirname, "../../../..");
const PYTHON = process.env.KAMICORE_PYTHON ?? path.join(REPO, ".venv", "bin", "python");
const startTimeoutMs = 30_000;
const stopTimeoutMs = 30_000;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function environment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("KAMICORE_") && name !== "PROMETHEUS_MULTIPROC_DIR") {
      env[name] = value;
    }
  }
  if (process.env.KAMICORE_EXT_DIR) {
    env.KAMICORE_EXT_DIR = process.env.KAMICORE_EXT_DIR;
  }
  env.PYTHONUNBUFFERED = "1";
  return env;
}

export interface ServerOptions {
  /** Config settings, passed as KAMICORE_<NAME> variables (e.g. {tls_cert: path}). */
  settings?: Record<string, string>;
  /** How the tests' clients reach it (TLS when the settings serve it). */
  clientOptions?: ClientOptions;
}

function settingsEnvironment(settings: Record<string, string>): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(settings).map(([name, value]) => [`KAMICORE_${name.toUpperCase()}`, value]));
}

/** `python` with the server's venv (for what Node cannot do alone, e.g. make certificates). */
export function python(args: string[], cwd: string): string {
  return execFileSync(PYTHON, args, { cwd, env: environment(), encoding: "utf8", timeout: 60_000 });
}

export class Server {
  readonly dataDir = mkdtempSync(path.join(tmpdir(), "kamicore-node-"));
  address = "";
  constructor(private readonly options: ServerOptions = {}) {}

  private process?: ChildProcess;
  private output = "";
  readonly clients: Client[] = [];

  async start(): Promise<this> {
    const port = await freePort();
    let metricsPort = await freePort();
    while (metricsPort === port) {
      metricsPort = await freePort();
    }
    this.address = `${HOST}:${port}`;
    const child = spawn(PYTHON, ["-m", "kamicore.cli", "--data-dir", this.dataDir, "serve", "--workers", "1",
      "--listen", this.address, "--metrics-listen", `${HOST}:${metricsPort}`],
    { env: { ...environment(), ...settingsEnvironment(this.options.settings ?? {}) }, cwd: this.dataDir, stdio: ["ignore", "pipe", "pipe"] });
    this.process = child;
    child.stdout!.on("data", (data: Buffer) => { this.output += data.toString(); });
    child.stderr!.on("data", (data: Buffer) => { this.output += data.toString(); });
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`server exited with ${child.exitCode} while starting:\n${this.output.slice(-4000)}`);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`server not serving after ${startTimeoutMs} ms:\n${this.output.slice(-4000)}`);
      }
      if (this.output.includes("kamicore serving on") && await this.answers()) {
        return this;
      }
      await sleep(100);
    }
  }

  private async answers(): Promise<boolean> {
    const probe = new Client(this.address, this.adminKey, this.options.clientOptions);
    try {
      await probe.listSkus({}, { deadlineMs: 2_000 });
      return true;
    } catch {
      return false;
    } finally {
      probe.close();
    }
  }

  /** SIGTERM, then the exit; SIGKILL if it does not come. The data dir goes too. */
  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) {
      client.close();
    }
    const child = this.process;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  get adminKey(): string {
    return readFileSync(path.join(this.dataDir, "admin.key"), "utf8").trim();
  }

  /** `kamicore --data-dir DIR ...` as an operator runs it; its stdout. */
  cli(...args: string[]): string {
    return execFileSync(PYTHON, ["-m", "kamicore.cli", "--data-dir", this.dataDir, ...args],
      { env: environment(), encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] });
  }

  /** A new key made with the CLI (`binding`: a storefront's channel, a terminal, a supplier). */
  createKey(role: string, binding = ""): string {
    const option = ({ storefront: "--channel", pos: "--terminal", supplier: "--supplier" } as Record<string, string>)[role];
    const key = this.cli("keys", "create", "--role", role, ...(option ? [option, binding] : [])).trim();
    if (!key.startsWith("kc_")) {
      throw new Error(`keys create printed no key: ${key}`);
    }
    return key;
  }

  client(key: string, options: ClientOptions = {}, address = this.address): Client {
    const client = new Client(address, key, { ...this.options.clientOptions, ...options });
    this.clients.push(client);
    return client;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** {state name without its prefix: count}. */
export function counts(stock: GetStockResponse): Record<string, number> {
  const result: Record<string, number> = {};
  for (const entry of stock.counts) {
    result[CodeState[entry.state].replace("CODE_STATE_", "")] = Number(entry.count);
  }
  return result;
}

/** Until `check` holds (the server is asked, not timed); fails after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!await check()) {
    if (Date.now() > deadline) {
      throw new Error(`still not ${what} after ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

/** A TCP proxy to `target` that, while holding, forwards requests but swallows every reply;
 * `cut()` then drops its connections: the client sees its call fail UNAVAILABLE after the server
 * acted on it (a reply lost in the network). */
export class LossyProxy {
  address = "";
  holding = false;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly target: string) {
    this.server = net.createServer((client) => this.relay(client));
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, HOST, resolve));
    this.address = `${HOST}:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  private relay(client: net.Socket): void {
    const [host, port] = this.target.split(":");
    const upstream = net.connect(Number(port), host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (data) => upstream.write(data));
    upstream.on("data", (data) => {
      if (!this.holding) {
        client.write(data);
      }
    });
  }

  hold(): void {
    this.holding = true;
  }

  /** Drop every connection (reset, not a clean close) and stop holding. */
  cut(): void {
    this.holding = false;
    for (const socket of this.sockets) {
      socket.resetAndDestroy();
    }
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

export function newCodes(count: number): string[] {
  return Array.from({ length: count }, () =>
    `ND-${randomBytes(4).toString("hex").toUpperCase()}-${randomBytes(4).toString("hex").toUpperCase()}`);
}

/** A SKU sold on the web channel with `count` fresh codes (imported with the wrapper); the codes. */
export async function stockedSku(admin: Client, skuId: string, count: number): Promise<string[]> {
  const created = await admin.createSku({ sku: {
    skuId, name: `Gift card ${skuId}`, faceValue: { currency: "CNY", amountMicros: 50_000_000n },
    deliveryKind: catalog.DeliveryKind.DELIVERY_KIND_CODE,
    prices: [{ channel: "web", priceMicros: 48_500_000n }],
  } });
  assert.equal(created.status, catalog.CreateSkuStatus.CREATE_SKU_STATUS_CREATED);
  const codes = newCodes(count);
  const imported = await admin.importCodes({ skuId, batchId: `${skuId}-batch`, unitCostMicros: 40_000_000n }, codes);
  assert.equal(imported.imported, BigInt(count));
  return codes;
}

