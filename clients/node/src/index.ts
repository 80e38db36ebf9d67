// @kamicore/client: a typed kamicore client for Node.js over gRPC (@grpc/grpc-js).
export { Client, ClientOptions, TlsOptions, newKey } from "./client";
export { CallOptions, DeepPartial, RetryInfo, RETRYABLE_CODES, isRetryable } from "./calls";
export { ImportOptions, ImportProgress, StreamOptions } from "./streams";
export { CURSOR_HEADER, EventStream, RECONNECT_CODES, WatchOptions, eventType, typeName } from "./events";
export * from "./limits";
export { status, Metadata, ServiceError } from "@grpc/grpc-js";
export * as catalog from "../gen/kamicore/v1/catalog";
export * as common from "../gen/kamicore/v1/common";
export * as events from "../gen/kamicore/v1/events";
export * as inventory from "../gen/kamicore/v1/inventory";
export * as orders from "../gen/kamicore/v1/orders";
export * as redemption from "../gen/kamicore/v1/redemption";
export * as risk from "../gen/kamicore/v1/risk";
export * as suppliers from "../gen/kamicore/v1/suppliers";
