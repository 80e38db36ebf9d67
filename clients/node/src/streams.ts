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
import { DeepPartial } from "./calls";
import { IMPORT_CHUNK_CODES, IMPORT_CHUNK_CODES_MAX, IMPORT_DEADLINE_MS, REDEEM_STREAM_DEADLINE_MS } from "./limits";

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

/** Write one message, waiting for the stream to drain when grpc-js asks; false when the call
 * ended meanwhile (answered early, failed or cancelled). */
async function write<T>(stream: grpc.ClientWritableStream<T> | grpc.ClientDuplexStream<T, unknown>,
  message: T, ended: Promise<void>): Promise<boolean> {
  let done = false;
  void ended.then(() => { done = true; });
  if (stream.write(message)) {
    return !done;
  }
  await Promise.race([once(stream, "drain"), ended]);
  return !done;
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
    let markEnded: () => void = () => undefined;
    const ended = new Promise<void>((settle) => { markEnded = settle; });
    const deadline = Date.now() + (options.deadlineMs ?? IMPORT_DEADLINE_MS);
    const call = stub.importCodes(metadata, { deadline }, (error, response) => {
      markEnded();
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

export async function* redeemStream(
  stub: RedemptionClient, metadata: grpc.Metadata,
  requests: Iterable<DeepPartial<RedeemRequest>> | AsyncIterable<DeepPartial<RedeemRequest>>,
  options: StreamOptions = {},
): AsyncGenerator<RedeemResponse> {
  const deadline = Date.now() + (options.deadlineMs ?? REDEEM_STREAM_DEADLINE_MS);
  const call = stub.redeemStream(metadata, { deadline });
  let markEnded: () => void = () => undefined;
  const ended = new Promise<void>((settle) => { markEnded = settle; });
  call.on("status", () => markEnded());
  call.on("error", () => markEnded());
  let sendError: unknown;
  const send = async (): Promise<void> => {
    for await (const init of requests) {
      const request = RedeemRequest.fromPartial(init);
      request.requestId ||= randomUUID();
      if (!await write(call, request, ended)) {
        return;
      }
    }
    call.end();
  };
  send().catch((error: unknown) => {
    sendError = error;
    call.cancel();
  });
  try {
    for await (const response of call as AsyncIterable<RedeemResponse>) {
      yield response;
    }
  } catch (error) {
    throw sendError ?? error;
  } finally {
    markEnded();
    call.cancel();
  }
  if (sendError) {
    throw sendError;
  }
}
