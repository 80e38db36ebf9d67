// The kamicore client: one channel, the API key on every call, a default deadline per method,
// and retries only where a key makes them safe.
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as catalog from "../gen/kamicore/v1/catalog";
import * as events from "../gen/kamicore/v1/events";
import * as inventory from "../gen/kamicore/v1/inventory";
import * as orders from "../gen/kamicore/v1/orders";
import * as redemption from "../gen/kamicore/v1/redemption";
import * as risk from "../gen/kamicore/v1/risk";
import * as suppliers from "../gen/kamicore/v1/suppliers";
import * as webhooks from "../gen/kamicore/v1/webhooks";
import { CallOptions, DeepPartial, RetryInfo, UnaryMethod, unaryOnce, withRetries } from "./calls";
import {
  CONFIRM_PAYMENT_DEADLINE_MS, CREATE_ORDER_DEADLINE_MS, DEFAULT_DEADLINE_MS, REDEEM_BATCH_DEADLINE_MS,
  REDEEM_DEADLINE_MS, ROTATE_KEYS_DEADLINE_MS,
} from "./limits";
import { EventStream, WatchOptions } from "./events";
import { importCodes, ImportOptions, redeemStream, StreamOptions } from "./streams";

/** TLS: `true` for the system's root certificates, or PEM buffers (a private CA, mutual TLS). */
export interface TlsOptions {
  rootCerts?: Buffer;
  privateKey?: Buffer;
  certChain?: Buffer;
}

export interface ClientOptions {
  /** Off by default (plaintext, e.g. 127.0.0.1 or behind a TLS-terminating proxy). */
  tls?: boolean | TlsOptions;
  /** Passed to the grpc-js channel (e.g. keepalive settings). */
  channelOptions?: grpc.ChannelOptions;
  /** Told before each retry (for logging or metrics). */
  onRetry?: (info: RetryInfo) => void;
}

interface Codec<T> {
  fromPartial(object: any): T;
}

/** A fresh key for a call the caller gave none: 36 bytes, inside every key's 1-64 bytes. */
export function newKey(): string {
  return randomUUID();
}

export class Client {
  /** The generated grpc-js stubs over this client's channel, for anything the wrapper does not
   * cover (pass `client.metadata()` and a deadline yourself). */
  readonly stubs: {
    catalog: catalog.CatalogClient;
    events: events.EventsClient;
    inventory: inventory.InventoryClient;
    orders: orders.OrdersClient;
    redemption: redemption.RedemptionClient;
    risk: risk.RiskClient;
    suppliers: suppliers.SuppliersClient;
    webhooks: webhooks.WebhooksClient;
  };
  private readonly channel: grpc.Channel;
  private readonly apiKey: string;
  private readonly onRetry?: (info: RetryInfo) => void;
  private closed = false;

  constructor(address: string, apiKey: string, options: ClientOptions = {}) {
    if (!apiKey) {
      throw new TypeError("apiKey: required (a kc_... key from `kamicore keys create`)");
    }
    this.apiKey = apiKey;
    this.onRetry = options.onRetry;
    const tls = options.tls === true ? {} : options.tls || undefined;
    const credentials = tls
      ? grpc.credentials.createSsl(tls.rootCerts ?? null, tls.privateKey ?? null, tls.certChain ?? null)
      : grpc.credentials.createInsecure();
    this.channel = new grpc.Channel(address, credentials, options.channelOptions ?? {});
    const shared = { channelOverride: this.channel };
    this.stubs = {
      catalog: new catalog.CatalogClient(address, credentials, shared),
      events: new events.EventsClient(address, credentials, shared),
      inventory: new inventory.InventoryClient(address, credentials, shared),
      orders: new orders.OrdersClient(address, credentials, shared),
      redemption: new redemption.RedemptionClient(address, credentials, shared),
      risk: new risk.RiskClient(address, credentials, shared),
      suppliers: new suppliers.SuppliersClient(address, credentials, shared),
      webhooks: new webhooks.WebhooksClient(address, credentials, shared),
    };
  }

  /** The call metadata: the API key as a bearer token. */
  metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${this.apiKey}`);
    return metadata;
  }

  /** Close the channel; calls in flight are cancelled and nothing is retried after. */
  close(): void {
    this.closed = true;
    this.channel.close();
  }

  // -- the generic call shapes ----------------------------------------------------------------

  private once<Req, Res>(
    stub: grpc.Client, method: UnaryMethod<Req, Res>, codec: Codec<Req>, init: DeepPartial<Req> | undefined,
    options: CallOptions | undefined, deadlineMs: number,
  ): Promise<Res> {
    return unaryOnce(stub, method, codec.fromPartial(init ?? {}), this.metadata(), options?.deadlineMs ?? deadlineMs);
  }

  /** A keyed call: the same request (same key) on every attempt. */
  private retried<Req, Res>(
    name: string, key: string, stub: grpc.Client, method: UnaryMethod<Req, Res>, request: Req,
    options: CallOptions | undefined, deadlineMs: number,
  ): Promise<Res> {
    const context = { name, key, onRetry: this.onRetry, isClosed: () => this.closed };
    return withRetries(context, () =>
      unaryOnce(stub, method, request, this.metadata(), options?.deadlineMs ?? deadlineMs));
  }

  // -- Orders -----------------------------------------------------------------------------------

  /** Reserve every line or none. Retried on UNAVAILABLE / DEADLINE_EXCEEDED with the same
   * idempotency key (a fresh one when `idempotencyKey` is empty): the server answers a retry
   * with its first answer, so an order is never created twice. */
  createOrder(init: DeepPartial<orders.CreateOrderRequest>, options?: CallOptions): Promise<orders.CreateOrderResponse> {
    const request = orders.CreateOrderRequest.fromPartial(init);
    request.idempotencyKey ||= newKey();
    const stub = this.stubs.orders;
    return this.retried("kamicore.v1.Orders/CreateOrder", request.idempotencyKey, stub, stub.createOrder,
      request, options, CREATE_ORDER_DEADLINE_MS);
  }

  /** Deliver a paid order. Retried with the same payment reference (a fresh one when empty):
   * a retry answers the order's current state and never sells or tops up twice. */
  confirmPayment(init: DeepPartial<orders.ConfirmPaymentRequest>, options?: CallOptions): Promise<orders.ConfirmPaymentResponse> {
    const request = orders.ConfirmPaymentRequest.fromPartial(init);
    request.paymentReference ||= newKey();
    const stub = this.stubs.orders;
    return this.retried("kamicore.v1.Orders/ConfirmPayment", request.paymentReference, stub, stub.confirmPayment,
      request, options, CONFIRM_PAYMENT_DEADLINE_MS);
  }

  cancelOrder(init: DeepPartial<orders.CancelOrderRequest>, options?: CallOptions): Promise<orders.CancelOrderResponse> {
    const stub = this.stubs.orders;
    return this.once(stub, stub.cancelOrder, orders.CancelOrderRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  getOrder(init: DeepPartial<orders.GetOrderRequest>, options?: CallOptions): Promise<orders.GetOrderResponse> {
    const stub = this.stubs.orders;
    return this.once(stub, stub.getOrder, orders.GetOrderRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  getDelivery(init: DeepPartial<orders.GetDeliveryRequest>, options?: CallOptions): Promise<orders.GetDeliveryResponse> {
    const stub = this.stubs.orders;
    return this.once(stub, stub.getDelivery, orders.GetDeliveryRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  reportInvalidCode(init: DeepPartial<orders.ReportInvalidCodeRequest>, options?: CallOptions): Promise<orders.ReportInvalidCodeResponse> {
    const stub = this.stubs.orders;
    return this.once(stub, stub.reportInvalidCode, orders.ReportInvalidCodeRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  // -- Redemption -------------------------------------------------------------------------------

  /** Redeem one code. Retried with the same request id (a fresh one when empty): a retry gets
   * the first answer (REDEEMED), never ALREADY_REDEEMED for the terminal's own redemption. */
  redeem(init: DeepPartial<redemption.RedeemRequest>, options?: CallOptions): Promise<redemption.RedeemResponse> {
    const request = redemption.RedeemRequest.fromPartial(init);
    request.requestId ||= newKey();
    const stub = this.stubs.redemption;
    return this.retried("kamicore.v1.Redemption/Redeem", request.requestId, stub, stub.redeem, request, options,
      REDEEM_DEADLINE_MS);
  }

  /** Redeem up to 1,000 codes; every item without a request id gets a fresh one, so the batch is
   * retried as a whole with the same ids. */
  redeemBatch(init: DeepPartial<redemption.RedeemBatchRequest>, options?: CallOptions): Promise<redemption.RedeemBatchResponse> {
    const request = redemption.RedeemBatchRequest.fromPartial(init);
    for (const item of request.items) {
      item.requestId ||= newKey();
    }
    const stub = this.stubs.redemption;
    const key = request.items.length ? request.items[0].requestId : "";
    return this.retried("kamicore.v1.Redemption/RedeemBatch", key, stub, stub.redeemBatch, request, options,
      REDEEM_BATCH_DEADLINE_MS);
  }

  /** RedeemStream: one answer per request, in order (each request without a request id gets a
   * fresh one, echoed in its answer). When the connection drops (UNAVAILABLE), the requests not
   * answered yet are sent again with their ids on a new stream: answered once, redeemed once. */
  redeemStream(
    requests: Iterable<DeepPartial<redemption.RedeemRequest>> | AsyncIterable<DeepPartial<redemption.RedeemRequest>>,
    options?: StreamOptions,
  ): AsyncGenerator<redemption.RedeemResponse> {
    const context = { metadata: () => this.metadata(), onRetry: this.onRetry, isClosed: () => this.closed };
    return redeemStream(this.stubs.redemption, context, requests, options);
  }

  verifyCode(init: DeepPartial<redemption.VerifyCodeRequest>, options?: CallOptions): Promise<redemption.VerifyCodeResponse> {
    const stub = this.stubs.redemption;
    return this.once(stub, stub.verifyCode, redemption.VerifyCodeRequest, init, options, REDEEM_DEADLINE_MS);
  }

  unlockTerminal(init: DeepPartial<redemption.UnlockTerminalRequest>, options?: CallOptions): Promise<redemption.UnlockTerminalResponse> {
    const stub = this.stubs.redemption;
    return this.once(stub, stub.unlockTerminal, redemption.UnlockTerminalRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  // -- Events -----------------------------------------------------------------------------------

  /** The events this key may see after `afterId` (0: from the oldest kept; `fromNow`: only new
   * ones), filtered by types, SKUs and (admins) channel. Resolves once the stream is live;
   * iterate it with `for await`: each event once, reconnecting from the last one yielded when
   * the stream breaks (see ./events). `close()` it, or break out of the loop, to end it. */
  watchEvents(options: WatchOptions = {}): Promise<EventStream> {
    const context = { metadata: () => this.metadata(), onRetry: this.onRetry, isClosed: () => this.closed };
    return new EventStream(this.stubs.events, context, options).open();
  }

  // -- Inventory --------------------------------------------------------------------------------

  /** Stream `codes` (any iterable, e.g. lines of a file) after `header`, in chunks, calling
   * `options.onProgress` as chunks are sent. Not retried: re-sending is safe (codes already
   * stored count as duplicates), from the answer's rows_processed. */
  importCodes(
    header: DeepPartial<inventory.ImportHeader>, codes: Iterable<string> | AsyncIterable<string>,
    options?: ImportOptions,
  ): Promise<inventory.ImportCodesResponse> {
    return importCodes(this.stubs.inventory, this.metadata(), inventory.ImportHeader.fromPartial(header), codes, options);
  }

  getStock(init: DeepPartial<inventory.GetStockRequest>, options?: CallOptions): Promise<inventory.GetStockResponse> {
    const stub = this.stubs.inventory;
    return this.once(stub, stub.getStock, inventory.GetStockRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  freezeCodes(init: DeepPartial<inventory.CodeOpRequest>, options?: CallOptions): Promise<inventory.CodeOpResponse> {
    const stub = this.stubs.inventory;
    return this.once(stub, stub.freezeCodes, inventory.CodeOpRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  unfreezeCodes(init: DeepPartial<inventory.CodeOpRequest>, options?: CallOptions): Promise<inventory.CodeOpResponse> {
    const stub = this.stubs.inventory;
    return this.once(stub, stub.unfreezeCodes, inventory.CodeOpRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  voidCodes(init: DeepPartial<inventory.CodeOpRequest>, options?: CallOptions): Promise<inventory.CodeOpResponse> {
    const stub = this.stubs.inventory;
    return this.once(stub, stub.voidCodes, inventory.CodeOpRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  rotateKeys(options?: CallOptions): Promise<inventory.RotateKeysResponse> {
    const stub = this.stubs.inventory;
    return this.once(stub, stub.rotateKeys, inventory.RotateKeysRequest, {}, options, ROTATE_KEYS_DEADLINE_MS);
  }

  // -- Catalog ----------------------------------------------------------------------------------

  createSku(init: DeepPartial<catalog.CreateSkuRequest>, options?: CallOptions): Promise<catalog.CreateSkuResponse> {
    const stub = this.stubs.catalog;
    return this.once(stub, stub.createSku, catalog.CreateSkuRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  getSku(init: DeepPartial<catalog.GetSkuRequest>, options?: CallOptions): Promise<catalog.GetSkuResponse> {
    const stub = this.stubs.catalog;
    return this.once(stub, stub.getSku, catalog.GetSkuRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  listSkus(init: DeepPartial<catalog.ListSkusRequest> = {}, options?: CallOptions): Promise<catalog.ListSkusResponse> {
    const stub = this.stubs.catalog;
    return this.once(stub, stub.listSkus, catalog.ListSkusRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  updateSku(init: DeepPartial<catalog.UpdateSkuRequest>, options?: CallOptions): Promise<catalog.UpdateSkuResponse> {
    const stub = this.stubs.catalog;
    return this.once(stub, stub.updateSku, catalog.UpdateSkuRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  // -- Risk -------------------------------------------------------------------------------------

  getRiskRules(options?: CallOptions): Promise<risk.GetRiskRulesResponse> {
    const stub = this.stubs.risk;
    return this.once(stub, stub.getRiskRules, risk.GetRiskRulesRequest, {}, options, DEFAULT_DEADLINE_MS);
  }

  setRiskRules(init: DeepPartial<risk.SetRiskRulesRequest>, options?: CallOptions): Promise<risk.SetRiskRulesResponse> {
    const stub = this.stubs.risk;
    return this.once(stub, stub.setRiskRules, risk.SetRiskRulesRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  listReviews(init: DeepPartial<risk.ListReviewsRequest> = {}, options?: CallOptions): Promise<risk.ListReviewsResponse> {
    const stub = this.stubs.risk;
    return this.once(stub, stub.listReviews, risk.ListReviewsRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  decideReview(init: DeepPartial<risk.DecideReviewRequest>, options?: CallOptions): Promise<risk.DecideReviewResponse> {
    const stub = this.stubs.risk;
    return this.once(stub, stub.decideReview, risk.DecideReviewRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  // -- Suppliers --------------------------------------------------------------------------------

  registerSupplier(init: DeepPartial<suppliers.RegisterSupplierRequest>, options?: CallOptions): Promise<suppliers.RegisterSupplierResponse> {
    const stub = this.stubs.suppliers;
    return this.once(stub, stub.registerSupplier, suppliers.RegisterSupplierRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  updateSupplier(init: DeepPartial<suppliers.UpdateSupplierRequest>, options?: CallOptions): Promise<suppliers.UpdateSupplierResponse> {
    const stub = this.stubs.suppliers;
    return this.once(stub, stub.updateSupplier, suppliers.UpdateSupplierRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  listSuppliers(init: DeepPartial<suppliers.ListSuppliersRequest> = {}, options?: CallOptions): Promise<suppliers.ListSuppliersResponse> {
    const stub = this.stubs.suppliers;
    return this.once(stub, stub.listSuppliers, suppliers.ListSuppliersRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  getSupplierStats(init: DeepPartial<suppliers.GetSupplierStatsRequest>, options?: CallOptions): Promise<suppliers.GetSupplierStatsResponse> {
    const stub = this.stubs.suppliers;
    return this.once(stub, stub.getSupplierStats, suppliers.GetSupplierStatsRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  supplierCallback(init: DeepPartial<suppliers.SupplierCallbackRequest>, options?: CallOptions): Promise<suppliers.SupplierCallbackResponse> {
    const stub = this.stubs.suppliers;
    return this.once(stub, stub.supplierCallback, suppliers.SupplierCallbackRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  // -- Webhooks ---------------------------------------------------------------------------------

  registerWebhook(init: DeepPartial<webhooks.RegisterWebhookRequest>, options?: CallOptions): Promise<webhooks.RegisterWebhookResponse> {
    const stub = this.stubs.webhooks;
    return this.once(stub, stub.registerWebhook, webhooks.RegisterWebhookRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  updateWebhook(init: DeepPartial<webhooks.UpdateWebhookRequest>, options?: CallOptions): Promise<webhooks.UpdateWebhookResponse> {
    const stub = this.stubs.webhooks;
    return this.once(stub, stub.updateWebhook, webhooks.UpdateWebhookRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  listWebhooks(init: DeepPartial<webhooks.ListWebhooksRequest> = {}, options?: CallOptions): Promise<webhooks.ListWebhooksResponse> {
    const stub = this.stubs.webhooks;
    return this.once(stub, stub.listWebhooks, webhooks.ListWebhooksRequest, init, options, DEFAULT_DEADLINE_MS);
  }

  deleteWebhook(init: DeepPartial<webhooks.DeleteWebhookRequest>, options?: CallOptions): Promise<webhooks.DeleteWebhookResponse> {
    const stub = this.stubs.webhooks;
    return this.once(stub, stub.deleteWebhook, webhooks.DeleteWebhookRequest, init, options, DEFAULT_DEADLINE_MS);
  }
}
