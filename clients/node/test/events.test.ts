// watchEvents against a real server: a storefront hears of its orders, each event once, across a
// connection that drops while events are on their way (the proxy swallows them, then cuts it:
// the client reconnects after the last event it yielded and gets them again).
import { strict as assert } from "node:assert";
import { after, before, test } from "node:test";
import { Client, EventStream, events, status, typeName } from "../src";
import { LossyProxy, Server, stockedSku } from "./support";

let server: Server;
let admin: Client;
let shop: Client;

before(async () => {
  server = await new Server().start();
  admin = server.client(server.adminKey);
  shop = server.client(server.createKey("storefront", "web"));
});

after(async () => {
  await server?.stop();
});

const KINDS = ["order.created", "order.paid", "order.delivered"];

async function buy(skuId: string, account: string): Promise<string> {
  const created = await shop.createOrder({ buyer: { accountId: account }, lines: [{ skuId, quantity: 1 }] });
  const paid = await shop.confirmPayment({ orderId: created.order!.orderId, amount: created.order!.total });
  return paid.order!.orderId;
}

async function take(stream: EventStream, count: number): Promise<events.Event[]> {
  const got: events.Event[] = [];
  for await (const event of stream) {
    got.push(event);
    if (got.length === count) {
      break;
    }
  }
  return got;
}

test("a watch goes on across a dropped connection and yields every event once", async () => {
  await stockedSku(admin, "node-watch", 4);
  const proxy = await new LossyProxy(server.address).start();
  const watcher = server.client(server.createKey("storefront", "web"), {}, proxy.address);
  try {
    let stream = await watcher.watchEvents({ skus: ["node-watch"], types: KINDS, fromNow: true });
    const orders = [await buy("node-watch", "ann"), await buy("node-watch", "bob")];
    const got = await take(stream, 6);  // breaking out ends the stream: open it again from its cursor
    stream = await watcher.watchEvents({ skus: ["node-watch"], afterId: got[got.length - 1].id });
    proxy.hold();  // the next events never reach the client ...
    orders.push(await buy("node-watch", "cid"), await buy("node-watch", "dan"));
    proxy.cut();  // ... and its connection drops: UNAVAILABLE, then a reconnect
    got.push(...await take(stream, 6));
    assert.deepEqual(got.map((event) => [typeName(event.type), event.orderId, event.channel]),
      orders.flatMap((order) => KINDS.map((kind) => [kind, order, "web"])));
    assert.equal(new Set(got.map((event) => event.id)).size, got.length);
  } finally {
    await proxy.stop();
  }
});

test("a watch that cannot go on rejects with its status", async () => {
  await assert.rejects(
    async () => take(await shop.watchEvents({ channel: "app" }), 1),
    (error: { code: number; details: string }) =>
      error.code === status.INVALID_ARGUMENT && error.details.startsWith("channel:"));
});
