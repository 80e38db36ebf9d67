// Retries after a lost reply: the server acted, the client saw UNAVAILABLE, and the retry (same
// key) gets the first answer instead of acting twice. Calls without a key are never retried.
import { strict as assert } from "node:assert";
import { after, before, test } from "node:test";
import { Client, RetryInfo, orders, redemption, status } from "../src";
import { LossyProxy, Server, counts, stockedSku, until } from "./support";

let server: Server;
let proxy: LossyProxy;
let admin: Client;
let retries: RetryInfo[];
let shop: Client;  // through the proxy
let pos: Client;   // through the proxy

before(async () => {
  server = await new Server().start();
  proxy = await new LossyProxy(server.address).start();
  admin = server.client(server.adminKey);
  const onRetry = (info: RetryInfo) => retries.push(info);
  shop = server.client(server.createKey("storefront", "web"), { onRetry }, proxy.address);
  pos = server.client(server.createKey("pos", "till-9"), { onRetry }, proxy.address);
});

after(async () => {
  await proxy?.stop();
  await server?.stop();
});

/** Run `call` through the proxy while it swallows replies; once `acted` says the server did
 * the work, drop the connection so the reply is lost. */
async function withLostReply<T>(call: () => Promise<T>, acted: () => Promise<boolean>): Promise<T> {
  retries = [];
  proxy.hold();
  const pending = call();
  await until("acted on by the server", acted);
  proxy.cut();
  return pending;
}

test("CreateOrder and ConfirmPayment retried after a lost reply act once", async () => {
  await stockedSku(admin, "node-retry", 5);
  const stock = async () => counts(await admin.getStock({ skuId: "node-retry" }));
  await shop.getStock({ skuId: "node-retry" });  // the proxied connection is up

  const created = await withLostReply(
    () => shop.createOrder({ buyer: { accountId: "dave" }, lines: [{ skuId: "node-retry", quantity: 2 }] }),
    async () => (await stock()).RESERVED === 2);
  assert.equal(created.status, orders.CreateOrderStatus.CREATE_ORDER_STATUS_CREATED);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].method, "kamicore.v1.Orders/CreateOrder");
  assert.equal(retries[0].code, status.UNAVAILABLE);
  assert.deepEqual([(await stock()).RESERVED, (await stock()).AVAILABLE], [2, 3]);

  const order = created.order!;
  const paid = await withLostReply(
    () => shop.confirmPayment({ orderId: order.orderId, amount: order.total }),
    async () => (await stock()).SOLD === 2);
  assert.equal(paid.status, orders.ConfirmPaymentStatus.CONFIRM_PAYMENT_STATUS_PAID);
  assert.equal(retries.length, 1);
  assert.equal(paid.order!.codes.length, 2);
  const fetched = await admin.getOrder({ orderId: order.orderId });
  assert.equal(fetched.order!.paymentReference, retries[0].key);
  assert.deepEqual([(await stock()).SOLD, (await stock()).AVAILABLE], [2, 3]);
});

test("Redeem retried after a lost reply answers REDEEMED, not ALREADY_REDEEMED", async () => {
  await stockedSku(admin, "node-retry-redeem", 1);
  const created = await admin.getStock({ skuId: "node-retry-redeem" }).then(() =>
    shop.createOrder({ buyer: { accountId: "erin" }, lines: [{ skuId: "node-retry-redeem", quantity: 1 }] }));
  const paid = await shop.confirmPayment({ orderId: created.order!.orderId, amount: created.order!.total });
  const code = paid.order!.codes[0].code;
  await pos.verifyCode({ code });  // the proxied connection is up

  const redeemed = await withLostReply(() => pos.redeem({ code }),
    async () => (await admin.verifyCode({ code })).redeemedAtMs > 0n);
  assert.equal(redemption.RedeemStatus[redeemed.status], "REDEEM_STATUS_REDEEMED");
  assert.equal(retries.length, 1);
  assert.equal(redeemed.requestId, retries[0].key);
});

test("RedeemStream resumes on a new stream after lost replies and redeems each code once", async () => {
  await stockedSku(admin, "node-retry-stream", 2);
  const created = await shop.createOrder({ buyer: { accountId: "gina" }, lines: [{ skuId: "node-retry-stream", quantity: 2 }] });
  const paid = await shop.confirmPayment({ orderId: created.order!.orderId, amount: created.order!.total });
  const codes = paid.order!.codes.map((code) => code.code);
  await pos.verifyCode({ code: codes[0] });  // the proxied connection is up

  const answers = await withLostReply(async () => {
    const received = [];
    for await (const answer of pos.redeemStream(codes.map((code, index) => ({ code, requestId: `gina-${index}` })))) {
      received.push(answer);
    }
    return received;
  }, async () => {
    const states = await Promise.all(codes.map((code) => admin.verifyCode({ code })));
    return states.every((state) => state.redeemedAtMs > 0n);
  });
  assert.deepEqual(answers.map((answer) => [redemption.RedeemStatus[answer.status], answer.requestId]),
    [["REDEEM_STATUS_REDEEMED", "gina-0"], ["REDEEM_STATUS_REDEEMED", "gina-1"]]);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].method, "kamicore.v1.Redemption/RedeemStream");
});

test("a call without a key is not retried: its DEADLINE_EXCEEDED reaches the caller", async () => {
  await stockedSku(admin, "node-no-retry", 1);
  const created = await shop.createOrder({ buyer: { accountId: "frank" }, lines: [{ skuId: "node-no-retry", quantity: 1 }] });
  retries = [];
  proxy.hold();
  try {
    await assert.rejects(shop.cancelOrder({ orderId: created.order!.orderId }, { deadlineMs: 500 }),
      (error: { code: number }) => error.code === status.DEADLINE_EXCEEDED);
  } finally {
    proxy.cut();
  }
  assert.equal(retries.length, 0);
});
