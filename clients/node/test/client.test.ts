// The wrapper end to end against a real server: the catalog, a streamed import with progress, an
// order paid and delivered, redemption one by one and over the bidirectional stream.
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { Client, catalog, inventory, orders, redemption, status } from "../src";
import { Server, counts, newCodes, stockedSku } from "./support";

let server: Server;
let admin: Client;
let shop: Client;
let pos: Client;

before(async () => {
  server = await new Server().start();
  admin = server.client(server.adminKey);
  shop = server.client(server.createKey("storefront", "web"));
  pos = server.client(server.createKey("pos", "till-1"));
});

after(async () => {
  await server?.stop();
});

test("a streamed import reports its progress and stores every code once", async () => {
  await admin.createSku({ sku: {
    skuId: "node-import", name: "Import", faceValue: { currency: "CNY", amountMicros: 10_000_000n },
    deliveryKind: catalog.DeliveryKind.DELIVERY_KIND_CODE, prices: [{ channel: "web", priceMicros: 9_000_000n }],
  } });
  const codes = newCodes(5);
  async function* fromAFile(): AsyncGenerator<string> {  // any async iterable, e.g. a file's lines
    yield* [...codes, codes[0]];
  }
  const seen: number[] = [];
  const reply = await admin.importCodes({ skuId: "node-import", batchId: "b1", unitCostMicros: 1n }, fromAFile(),
    { chunkCodes: 2, onProgress: (progress) => seen.push(progress.rowsSent) });
  assert.equal(reply.status, inventory.ImportStatus.IMPORT_STATUS_OK);
  assert.deepEqual([reply.imported, reply.duplicates, reply.rowsProcessed], [5n, 1n, 6n]);
  assert.deepEqual(seen, [2, 4, 6]);
  assert.equal(counts(await admin.getStock({ skuId: "node-import" })).AVAILABLE, 5);

  const again = await admin.importCodes({ skuId: "node-import", batchId: "b1", unitCostMicros: 1n }, codes);
  assert.deepEqual([again.imported, again.duplicates], [0n, 5n]);
});

test("an import into a missing SKU answers SKU_NOT_FOUND; a failing source rejects with its error", async () => {
  let pulled = 0;
  function* endless(): Generator<string> {  // the server answers at the header: sending stops
    for (;;) {
      pulled += 1;
      yield `ND-ENDLESS-${pulled}`;
    }
  }
  const missing = await admin.importCodes({ skuId: "node-missing", batchId: "b1" }, endless(), { chunkCodes: 100 });
  assert.equal(missing.status, inventory.ImportStatus.IMPORT_STATUS_SKU_NOT_FOUND);
  assert.equal(missing.imported, 0n);
  assert.ok(pulled > 0);

  async function* unreadable(): AsyncGenerator<string> {
    yield* newCodes(3);
    throw new Error("codes.csv: read failed");
  }
  await assert.rejects(admin.importCodes({ skuId: "node-import", batchId: "b1", unitCostMicros: 1n }, unreadable()),
    /codes.csv: read failed/);
});

test("a bad chunk size is refused before anything is sent", async () => {
  await assert.rejects(admin.importCodes({ skuId: "node-import", batchId: "b1" }, ["X"], { chunkCodes: 0 }),
    /chunkCodes: must be 1-10000/);
});

test("an order is created with a generated idempotency key, paid and delivered", async () => {
  const codes = await stockedSku(admin, "node-buy", 3);
  const created = await shop.createOrder({ buyer: { accountId: "alice" }, lines: [{ skuId: "node-buy", quantity: 2 }] });
  assert.equal(created.status, orders.CreateOrderStatus.CREATE_ORDER_STATUS_CREATED);
  const order = created.order!;
  const paid = await shop.confirmPayment({ orderId: order.orderId, paymentReference: "pay-node-1", amount: order.total });
  assert.equal(paid.status, orders.ConfirmPaymentStatus.CONFIRM_PAYMENT_STATUS_PAID);
  const delivered = paid.order!.codes.map((code) => code.code);
  assert.equal(delivered.length, 2);
  for (const code of delivered) {
    assert.ok(codes.includes(code));
  }
  const again = await shop.getDelivery({ orderId: order.orderId });
  assert.deepEqual(again.order!.codes.map((code) => code.code), delivered);
  const stock = counts(await admin.getStock({ skuId: "node-buy" }));
  assert.deepEqual([stock.AVAILABLE, stock.SOLD], [1, 2]);
});

test("redeem, one by one and over the stream, answers in order with the request ids", async () => {
  await stockedSku(admin, "node-redeem", 3);
  const created = await shop.createOrder({ idempotencyKey: "node-redeem-1", buyer: { accountId: "carol" },
    lines: [{ skuId: "node-redeem", quantity: 3 }] });
  const paid = await shop.confirmPayment({ orderId: created.order!.orderId, amount: created.order!.total });
  const [first, second, third] = paid.order!.codes.map((code) => code.code);

  const one = await pos.redeem({ code: first });
  assert.equal(one.status, redemption.RedeemStatus.REDEEM_STATUS_REDEEMED);
  assert.equal(one.redeemedByTerminal, "till-1");
  assert.ok(one.requestId.length > 0);
  const twice = await pos.redeem({ code: first });
  assert.equal(twice.status, redemption.RedeemStatus.REDEEM_STATUS_ALREADY_REDEEMED);

  const answers = [];
  for await (const answer of pos.redeemStream([{ code: second, requestId: "s-1" }, { code: "ND-NOT-A-CODE" },
    { code: third, requestId: "s-3" }])) {
    answers.push(answer);
  }
  assert.deepEqual(answers.map((answer) => redemption.RedeemStatus[answer.status]),
    ["REDEEM_STATUS_REDEEMED", "REDEEM_STATUS_NOT_FOUND", "REDEEM_STATUS_REDEEMED"]);
  assert.equal(answers[0].requestId, "s-1");
  assert.ok(answers[1].requestId.length > 0);
  assert.equal(answers[2].requestId, "s-3");
});

test("a call's error, streams included, carries its gRPC status", async () => {
  const stranger = server.client("kc_not-a-key");
  await assert.rejects(stranger.listSkus(), (error: { code: number }) => error.code === status.UNAUTHENTICATED);
  await assert.rejects(shop.createSku({ sku: { skuId: "nope" } }),
    (error: { code: number }) => error.code === status.PERMISSION_DENIED);
  await assert.rejects(shop.importCodes({ skuId: "node-import", batchId: "b1" }, ["ND-X"]),
    (error: { code: number }) => error.code === status.PERMISSION_DENIED);
  await assert.rejects(async () => {
    for await (const answer of stranger.redeemStream([{ code: "ND-X" }])) {
      assert.fail(`answered ${answer.status}`);
    }
  }, (error: { code: number }) => error.code === status.UNAUTHENTICATED);
});

test("the example buys a code", async () => {
  await stockedSku(admin, "node-example", 1);
  const output = execFileSync(process.execPath, [path.join(__dirname, "..", "examples", "buy.js"), "node-example"],
    { env: { ...process.env, KAMICORE_ADDRESS: server.address, KAMICORE_API_KEY: server.createKey("storefront", "web") },
      encoding: "utf8" });
  assert.match(output, /^order \S+: CONFIRM_PAYMENT_STATUS_PAID\n  code \d+ \S+/);
  assert.equal(counts(await admin.getStock({ skuId: "node-example" })).SOLD, 1);
});
