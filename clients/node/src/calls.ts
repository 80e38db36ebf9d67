// One unary call with a deadline, and the retry loop for calls that carry an idempotency key or
// request id (and only those: anything else is tried once, whatever happens).
import * as grpc from "@grpc/grpc-js";
import { RETRY_ATTEMPTS_MAX, RETRY_BACKOFF_INITIAL_MS, RETRY_BACKOFF_MAX_MS } from "./limits";

/** Per-call options. */
export interface CallOptions {
  /** This attempt's deadline, ms from now (each retry gets a fresh one); default per method. */
  deadlineMs?: number;
}

/** What the client tells `onRetry` before it tries a keyed call again. */
export interface RetryInfo {
  /** The RPC, e.g. "kamicore.v1.Orders/CreateOrder". */
  method: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  /** Its status: UNAVAILABLE or DEADLINE_EXCEEDED. */
  code: grpc.status;
  /** The idempotency key, payment reference or request id the retry reuses. */
  key: string;
}

/** The generated grpc-js method shape (its last overload). */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/** The two statuses after which a keyed call may have acted or not: the server may not have
 * received it, or acted and its reply was lost. Retrying with the same key settles which. */
export const RETRYABLE_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
]);

export function isRetryable(error: unknown): error is grpc.ServiceError {
  return typeof error === "object" && error !== null && RETRYABLE_CODES.has((error as grpc.ServiceError).code);
}

export function unaryOnce<Req, Res>(
  stub: grpc.Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  metadata: grpc.Metadata,
  deadlineMs: number,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method.call(stub, request, metadata, { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

export interface RetryContext {
  name: string;
  key: string;
  onRetry?: (info: RetryInfo) => void;
  isClosed: () => boolean;
}

/** `attempt` until it succeeds, fails otherwise than UNAVAILABLE / DEADLINE_EXCEEDED, or
 * RETRY_ATTEMPTS_MAX attempts failed; waits with exponential backoff and jitter between. */
export async function withRetries<Res>(context: RetryContext, attempt: () => Promise<Res>): Promise<Res> {
  let backoffMs = RETRY_BACKOFF_INITIAL_MS;
  for (let number = 1; ; number++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isRetryable(error) || number >= RETRY_ATTEMPTS_MAX || context.isClosed()) {
        throw error;
      }
      context.onRetry?.({ method: context.name, attempt: number, code: error.code, key: context.key });
      await new Promise((resolve) => setTimeout(resolve, backoffMs * (0.5 + Math.random() / 2)));
      backoffMs = Math.min(backoffMs * 2, RETRY_BACKOFF_MAX_MS);
    }
  }
}

/** Plain-object input for a generated message: every field optional, nested ones too. */
type Builtin = Date | Function | Uint8Array | string | number | boolean | bigint | undefined;
export type DeepPartial<T> = T extends Builtin
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends { $case: string; value: unknown }
      ? { $case: T["$case"]; value?: DeepPartial<T["value"]> }
      : T extends {}
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : Partial<T>;
