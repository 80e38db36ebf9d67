// The two client-side streams: ImportCodes (client streaming, with progress) and RedeemStream
// (bidirectional). Both respect the stream's flow control: nothing is buffered beyond what
// grpc-js asks for.
import { once } from "node:events";
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  ImportCodesRequest, ImportCodesResponse, ImportHeader, InventoryClient,
} from "../gen/kamicore/v1/inventory";
import { RedeemRequest, RedeemResponse, RedemptionClient } from "../gen/kamicore/v1/redemption";
import { DeepPartial, RetryInfo } from "./calls";
import {
  IMPORT_CHUNK_CODES, IMPORT_CHUNK_CODES_MAX, IMPORT_DEADLINE_MS, REDEEM_STREAM_DEADLINE_MS, RETRY_ATTEMPTS_MAX,
  RETRY_BACKOFF_INITIAL_MS, RETRY_BACKOFF_MAX_MS,
} from "./limits";

/** How far an import got, told after each chunk is handed to the stream. */
export interface ImportProgress {
  /** Codes sent so far. */
  rowsSent: number;
  /** Chunk messages sent so far. */
  chunksSent: number;
}

export interface StreamOptions {
  /** The whole stream's deadline, ms from now. */
  deadlineMs?: number;
}

export interface ImportOptions extends StreamOptions {
  /** Codes per chunk message, 1-10,000 (default IMPORT_CHUNK_CODES). */
  chunkCodes?: number;
  onProgress?: (progress: ImportProgress) => void;
}

/** Whether a call ended (answered, failed or cancelled), and a promise of it. */
interface Ending {
  done: boolean;
  promise: Promise<void>;
  settle: () => void;
}

function ending(): Ending {
  const state = { done: false } as Ending;
  state.promise = new Promise<void>((resolve) => {
    state.settle = () => {
      state.done = true;
      resolve();
    };
  });
  return state;
}

/** Write one message, waiting for the stream to drain when grpc-js asks; false when the call
 * ended before or meanwhile (answered early, failed or cancelled): stop sending then. */
async function write<T>(stream: grpc.ClientWritableStream<T> | grpc.ClientDuplexStream<T, unknown>,
  message: T, ended: Ending): Promise<boolean> {
  if (ended.done) {
    return false;
  }
  if (!stream.write(message)) {
    // once() rejects on the stream's 'error': the call's own outcome reports that
    await Promise.race([once(stream, "drain").catch(() => undefined), ended.promise]);
  }
  return !ended.done;
}

export function importCodes(
  stub: InventoryClient, metadata: grpc.Metadata, header: ImportHeader,
  codes: Iterable<string> | AsyncIterable<string>, options: ImportOptions = {},
): Promise<ImportCodesResponse> {
  const chunkCodes = options.chunkCodes ?? IMPORT_CHUNK_CODES;
  if (!Number.isInteger(chunkCodes) || chunkCodes < 1 || chunkCodes > IMPORT_CHUNK_CODES_MAX) {
    return Promise.reject(new RangeError(`chunkCodes: must be 1-${IMPORT_CHUNK_CODES_MAX}, not ${chunkCodes}`));
  }
  return new Promise<ImportCodesResponse>((resolve, reject) => {
    const ended = ending();
    const deadline = Date.now() + (options.deadlineMs ?? IMPORT_DEADLINE_MS);
    const call = stub.importCodes(metadata, { deadline }, (error, response) => {
      ended.settle();
      if (error) {
        reject(error);
      } else {
        resolve(response);
      }
    });
    const send = async (): Promise<void> => {
      const progress: ImportProgress = { rowsSent: 0, chunksSent: 0 };
      if (!await write(call, { part: { $case: "header", value: header } }, ended)) {
        return;
      }
      let chunk: string[] = [];
      const flush = async (): Promise<boolean> => {
        const message: ImportCodesRequest = { part: { $case: "chunk", value: { codes: chunk } } };
        const sent = chunk.length;
        chunk = [];
        if (!await write(call, message, ended)) {
          return false;
        }
        progress.rowsSent += sent;
        progress.chunksSent += 1;
        options.onProgress?.({ ...progress });
        return true;
      };
      for await (const code of codes) {
        chunk.push(code);
        if (chunk.length >= chunkCodes && !await flush()) {
          return;
        }
      }
      if (chunk.length && !await flush()) {
        return;
      }
      call.end();
    };
    send().catch((error: unknown) => {
      // the codes' iterable failed (e.g. a file could not be read): nothing more is sent, and
      // the server keeps only the groups it committed before (re-send them: duplicates)
      call.cancel();
      reject(error);
    });
  });
}

/** What a resuming stream needs from its client. */
export interface StreamContext {
  metadata: () => grpc.Metadata;
  onRetry?: (info: RetryInfo) => void;
  isClosed: () => boolean;
}

type Sent = RedeemRequest & { generation?: number };

/** RedeemStream that survives a dropped connection: every request carries a request id, so the
 * requests not answered yet are sent again, in order, on a new stream (UNAVAILABLE only, at most
 * RETRY_ATTEMPTS_MAX times in a row without an answer); the server answers a request id it has
 * seen with its first answer, so nothing is redeemed twice. */
export async function* redeemStream(
  stub: RedemptionClient, context: StreamContext,
  requests: Iterable<DeepPartial<RedeemRequest>> | AsyncIterable<DeepPartial<RedeemRequest>>,
  options: StreamOptions = {},
): AsyncGenerator<RedeemResponse> {
  const deadline = Date.now() + (options.deadlineMs ?? REDEEM_STREAM_DEADLINE_MS);
  const source: AsyncIterator<DeepPartial<RedeemRequest>> = Symbol.asyncIterator in requests
    ? requests[Symbol.asyncIterator]()
    : (async function* () { yield* requests; })();
  const pending: Sent[] = [];  // sent, not answered yet, in order
  let sendError: unknown;
  let sender: Promise<void> = Promise.resolve();
  let failures = 0;
  let backoffMs = RETRY_BACKOFF_INITIAL_MS;
  for (let generation = 1; ; generation++) {
    const call = stub.redeemStream(context.metadata(), { deadline });
    const ended = ending();
    call.on("status", () => ended.settle());
    call.on("error", () => ended.settle());
    const resend = async (): Promise<boolean> => {
      for (const request of [...pending]) {
        if ((request.generation ?? 0) < generation) {
          request.generation = generation;
          if (!await write(call, request, ended)) {
            return false;
          }
        }
      }
      return true;
    };
    const previous = sender;
    sender = (async () => {
      // the unanswered requests first; then those the previous stream's sender took from the
      // source after it broke; then the rest of the source
      if (!await resend()) {
        return;
      }
      await previous;
      if (!await resend()) {
        return;
      }
      for (;;) {
        const next = await source.next();
        if (next.done) {
          call.end();
          return;
        }
        const request: Sent = RedeemRequest.fromPartial(next.value);
        request.requestId ||= randomUUID();
        request.generation = generation;
        pending.push(request);
        if (!await write(call, request, ended)) {
          return;  // it is pending: the next stream sends it
        }
      }
    })().catch((error: unknown) => {
      sendError = error;
      call.cancel();
    });
    try {
      for await (const response of call as AsyncIterable<RedeemResponse>) {
        pending.shift();
        failures = 0;
        backoffMs = RETRY_BACKOFF_INITIAL_MS;
        yield response;
      }
      await sender;
      if (sendError) {
        throw sendError;
      }
      return;
    } catch (error) {
      if (sendError) {
        throw sendError;
      }
      const code = (error as grpc.ServiceError).code;
      if (code !== grpc.status.UNAVAILABLE || ++failures >= RETRY_ATTEMPTS_MAX || context.isClosed()) {
        throw error;
      }
      context.onRetry?.({ method: "kamicore.v1.Redemption/RedeemStream", attempt: failures, code,
        key: pending.length ? pending[0].requestId : "" });
      await new Promise((resolve) => setTimeout(resolve, backoffMs * (0.5 + Math.random() / 2)));
      backoffMs = Math.min(backoffMs * 2, RETRY_BACKOFF_MAX_MS);
    } finally {
      ended.settle();
      call.cancel();
    }
  }
}
