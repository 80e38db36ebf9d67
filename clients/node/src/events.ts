// WatchEvents with the cursor kept for you: `await client.watchEvents({...})` opens the stream
// and resolves once the server has fixed its cursor (the kamicore-after-id response header), so
// every event committed from then on will be seen; `for await (const event of stream)` yields
// each event once, in id order. When the stream breaks - the connection dropped (UNAVAILABLE),
// the server cut off a reader that fell behind (RESOURCE_EXHAUSTED) or shut down, or the
// connection's own deadline passed - it reconnects with afterId = the last event it yielded
// (or the headers' cursor, before the first event): nothing lost, nothing twice. It gives up
// after WATCH_RECONNECTS_MAX failures in a row with no event and no headers between them; any
// other error (bad filters, a pruned cursor: OUT_OF_RANGE) is thrown at once.
import * as grpc from "@grpc/grpc-js";
import { Event, EventType, EventsClient, WatchEventsRequest, WatchEventsResponse } from "../gen/kamicore/v1/events";
import { RetryInfo } from "./calls";
import { RETRY_BACKOFF_INITIAL_MS, RETRY_BACKOFF_MAX_MS, WATCH_DEADLINE_MS, WATCH_RECONNECTS_MAX } from "./limits";

/** The response header naming the id a WatchEvents stream starts after. */
export const CURSOR_HEADER = "kamicore-after-id";
/** The statuses after which a watch reconnects from its cursor. */
export const RECONNECT_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.UNAVAILABLE, grpc.status.RESOURCE_EXHAUSTED, grpc.status.DEADLINE_EXCEEDED,
]);

export interface WatchOptions {
  /** The id of the last event you processed (0: from the oldest event kept). */
  afterId?: bigint | number;
  /** Only these types: EventType values or kamicore's names ("order.paid"). */
  types?: Array<EventType | string>;
  /** Only events about these SKU ids. */
  skus?: string[];
  /** Admin keys only: one sales channel's events. */
  channel?: string;
  /** Only events committed from now on (afterId must then be 0). */
  fromNow?: boolean;
  /** Each connection's deadline, ms (it then reconnects); default WATCH_DEADLINE_MS. */
  deadlineMs?: number;
}

/** EventType of "order.paid" (or the value itself). */
export function eventType(value: EventType | string): EventType {
  if (typeof value !== "string") {
    return value;
  }
  const name = `EVENT_TYPE_${value.toUpperCase().replace(".", "_")}` as keyof typeof EventType;
  if (!(name in EventType)) {
    throw new RangeError(`types: ${value} is not an event type`);
  }
  return EventType[name];
}

/** "order.paid" for EVENT_TYPE_ORDER_PAID: the inverse of eventType. */
export function typeName(value: EventType): string {
  return EventType[value].replace("EVENT_TYPE_", "").toLowerCase().replace("_", ".");
}

export interface WatchContext {
  metadata: () => grpc.Metadata;
  onRetry?: (info: RetryInfo) => void;
  isClosed: () => boolean;
}

export class EventStream implements AsyncIterable<Event> {
  /** The id of the last event yielded (or the cursor the stream started after). */
  afterId: bigint;
  private fromNow: boolean;
  private readonly request: Omit<WatchEventsRequest, "afterId" | "fromNow">;
  private readonly deadlineMs: number;
  private call?: grpc.ClientReadableStream<WatchEventsResponse>;
  private failures = 0;
  private closed = false;
  private failed?: Error;  // the error that ended the last attempt before its headers

  constructor(private readonly stub: EventsClient, private readonly context: WatchContext, options: WatchOptions = {}) {
    this.afterId = BigInt(options.afterId ?? 0);
    this.fromNow = options.fromNow ?? false;
    this.request = {
      types: (options.types ?? []).map(eventType), skus: options.skus ?? [], channel: options.channel ?? "",
    };
    this.deadlineMs = options.deadlineMs ?? WATCH_DEADLINE_MS;
  }

  /** Open the stream and wait for its headers (Client.watchEvents does). */
  async open(): Promise<this> {
    const request: WatchEventsRequest = {
      ...this.request, afterId: this.fromNow ? 0n : this.afterId, fromNow: this.fromNow,
    };
    const call = this.stub.watchEvents(request, this.context.metadata(), { deadline: Date.now() + this.deadlineMs });
    const headers = await new Promise<grpc.Metadata | undefined>((resolve) => {
      call.once("metadata", resolve);
      call.once("error", (error: Error) => {  // refused or dropped before the headers
        this.failed = error;
        resolve(undefined);
      });
    });
    const cursor = headers?.get(CURSOR_HEADER)[0];
    if (cursor !== undefined) {
      this.afterId = BigInt(cursor.toString());
      this.fromNow = false;
      this.failures = 0;
    }
    this.call = this.failed === undefined ? call : undefined;
    return this;
  }

  /** Wait before reconnecting after `error`; throw it when the watch is over. */
  private async reconnectAfter(error: unknown): Promise<void> {
    const code = (error as grpc.ServiceError).code;
    if (!RECONNECT_CODES.has(code) || ++this.failures > WATCH_RECONNECTS_MAX || this.closed
      || this.context.isClosed()) {
      throw error;
    }
    this.context.onRetry?.({ method: "kamicore.v1.Events/WatchEvents", attempt: this.failures, code,
      key: this.afterId.toString() });
    const backoffMs = Math.min(RETRY_BACKOFF_INITIAL_MS * 2 ** (this.failures - 1), RETRY_BACKOFF_MAX_MS);
    await new Promise((resolve) => setTimeout(resolve, backoffMs * (0.5 + Math.random() / 2)));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Event> {
    try {
      for (;;) {
        if (!this.call && this.failed === undefined) {
          await this.open();
        }
        if (this.failed !== undefined) {
          const error = this.failed;
          this.failed = undefined;
          await this.reconnectAfter(error);
          continue;
        }
        try {
          for await (const reply of this.call as AsyncIterable<WatchEventsResponse>) {
            for (const event of reply.events) {  // a page of events per reply
              this.afterId = event.id;
              this.fromNow = false;
              this.failures = 0;
              yield event;
            }
          }
          this.call = undefined;  // ended without a status: resume
        } catch (error) {
          this.call = undefined;
          await this.reconnectAfter(error);
        }
      }
    } finally {
      this.close();
    }
  }

  /** End the watch (the stream is cancelled; nothing reconnects). */
  close(): void {
    this.closed = true;
    this.call?.cancel();
    this.call = undefined;
  }
}
