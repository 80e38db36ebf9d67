// Buy one code of a SKU as a storefront, the way a shop's checkout does:
//
//   KAMICORE_ADDRESS=127.0.0.1:50051 KAMICORE_API_KEY=kc_... npm run example -- SKU_ID [ACCOUNT]
//
// (a storefront key: `kamicore keys create --role storefront --channel web`). CreateOrder and
// ConfirmPayment carry keys (an idempotency key, a payment reference), so the client retries
// them safely when the network fails; pass your own to retry across restarts too.
import { Client, orders } from "../src";

async function main(): Promise<number> {
  const [skuId, account = "example-buyer"] = process.argv.slice(2);
  const address = process.env.KAMICORE_ADDRESS ?? "127.0.0.1:50051";
  const apiKey = process.env.KAMICORE_API_KEY;
  if (!skuId || !apiKey) {
    console.error("usage: KAMICORE_API_KEY=kc_... [KAMICORE_ADDRESS=host:port] buy SKU_ID [ACCOUNT]");
    return 2;
  }
  const client = new Client(address, apiKey, { tls: process.env.KAMICORE_TLS === "1" });
  try {
    const created = await client.createOrder({ buyer: { accountId: account }, lines: [{ skuId, quantity: 1 }] });
    if (created.status !== orders.CreateOrderStatus.CREATE_ORDER_STATUS_CREATED) {
      console.error(`not ordered: ${orders.CreateOrderStatus[created.status]}`);
      return 1;
    }
    const order = created.order!;
    // ... the buyer pays; then, with the payment provider's reference:
    const paid = await client.confirmPayment({ orderId: order.orderId, paymentReference: `example-${order.orderId}`,
      amount: order.total });
    console.log(`order ${order.orderId}: ${orders.ConfirmPaymentStatus[paid.status]}`);
    for (const code of paid.order?.codes ?? []) {
      console.log(`  code ${code.codeId} ${code.maskedCode} (show the buyer code.code)`);
    }
    return paid.status === orders.ConfirmPaymentStatus.CONFIRM_PAYMENT_STATUS_PAID ? 0 : 1;
  } finally {
    client.close();
  }
}

main().then((code) => { process.exitCode = code; }, (error) => {
  console.error(`failed: ${error.message ?? error}`);
  process.exitCode = 1;
});
