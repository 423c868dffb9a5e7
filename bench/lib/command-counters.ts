import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  CommandFailedEvent,
  CommandStartedEvent,
  CommandSucceededEvent,
  Document,
  MongoClient,
} from 'mongodb';
import type { CommandCounter, CommandStats, ServerSide } from './protocol';

/**
 * Commands run inside this scope are the benchmark's own (readiness polls),
 * not the engine's, and are not counted.
 */
const harnessScope = new AsyncLocalStorage<true>();

export function asHarness<T>(work: () => Promise<T>): Promise<T> {
  return harnessScope.run(true, work);
}

interface Started {
  counter: CommandCounter;
  /** The command opens a change stream; `updateLookup` when it asks for the current document of updates. */
  opensChangeStream?: { updateLookup: boolean };
  /** Reads a change stream opened with `updateLookup`. */
  readsLookupStream?: boolean;
  cursorId?: string;
}

const count = (x: unknown): number => (Array.isArray(x) ? x.length : 0);
const num = (x: unknown): number => (typeof x === 'number' ? x : 0);

/** Write statements a command carries. */
function statementsOf(command: string, cmd: Document): number {
  switch (command) {
    case 'insert':
      return count(cmd.documents);
    case 'update':
      return count(cmd.updates);
    case 'delete':
      return count(cmd.deletes);
    case 'findAndModify':
      return 1;
    case 'bulkWrite':
      return count(cmd.ops);
    default:
      return 0;
  }
}

/** Documents the reply reports written. */
function writtenBy(command: string, reply: Document): number {
  switch (command) {
    case 'insert':
    case 'delete':
      return num(reply.n);
    case 'update':
      return num(reply.nModified) + count(reply.upserted);
    case 'findAndModify': {
      const n = (reply.lastErrorObject as Document | undefined)?.n;
      return typeof n === 'number' ? n : reply.value ? 1 : 0;
    }
    case 'bulkWrite':
      return (
        num(reply.nInserted) + num(reply.nModified) + num(reply.nUpserted) + num(reply.nDeleted)
      );
    default:
      return 0;
  }
}

/**
 * Counts, per server, command and target, what a process's driver clients
 * send (driver command monitoring: the client must be created with
 * `monitorCommands: true`). Figures depend on the engine only, not on the
 * server, so they hold for `mongod` as for SecantusDB.
 */
export class CommandCounters {
  readonly stats: CommandStats = {};

  attach(client: MongoClient, side: ServerSide): void {
    const started = new Map<number, Started>();
    /** Open change-stream cursors of this client: id → opened with `updateLookup`. */
    const streams = new Map<string, boolean>();

    client.on('commandStarted', (e: CommandStartedEvent) => {
      if (harnessScope.getStore()) return;
      const cmd = e.command;
      const pipeline = cmd.pipeline as Document[] | undefined;
      const changeStream = e.commandName === 'aggregate' ? pipeline?.[0]?.$changeStream : undefined;
      const cursorId = e.commandName === 'getMore' ? String(cmd.getMore) : undefined;
      const lookupStream = cursorId === undefined ? undefined : streams.get(cursorId);
      const named = cmd[e.commandName];
      const target =
        changeStream || lookupStream !== undefined
          ? 'changeStream'
          : e.commandName === 'getMore'
            ? String(cmd.collection ?? '')
            : typeof named === 'string'
              ? named
              : '';
      const counter = this.counter(side, e.commandName, target);
      counter.count++;
      counter.statements += statementsOf(e.commandName, cmd);
      started.set(e.requestId, {
        counter,
        opensChangeStream: changeStream
          ? { updateLookup: (changeStream as Document).fullDocument === 'updateLookup' }
          : undefined,
        readsLookupStream: lookupStream,
        cursorId,
      });
      if (e.commandName === 'killCursors')
        for (const id of (cmd.cursors as unknown[] | undefined) ?? []) streams.delete(String(id));
    });

    client.on('commandSucceeded', (e: CommandSucceededEvent) => {
      const s = started.get(e.requestId);
      if (!s) return;
      started.delete(e.requestId);
      const { counter } = s;
      this.time(counter, e.duration);
      const reply = e.reply as Document;
      counter.written += writtenBy(counter.command, reply);
      if (counter.command === 'findAndModify' && reply.value) counter.returned++;
      const cursor = reply.cursor as Document | undefined;
      // bulkWrite's cursor holds per-operation results, not documents.
      if (!cursor || counter.command === 'bulkWrite') return;
      const batch = (cursor.firstBatch ?? cursor.nextBatch) as Document[] | undefined;
      counter.returned += count(batch);
      const lookups = s.opensChangeStream?.updateLookup || s.readsLookupStream;
      if (lookups && batch)
        counter.lookups += batch.filter((event) => event.operationType === 'update').length;
      const id = String(cursor.id ?? 0);
      if (s.opensChangeStream && id !== '0') streams.set(id, s.opensChangeStream.updateLookup);
      if (s.cursorId !== undefined && id === '0') streams.delete(s.cursorId);
    });

    client.on('commandFailed', (e: CommandFailedEvent) => {
      const s = started.get(e.requestId);
      if (!s) return;
      started.delete(e.requestId);
      s.counter.failed++;
      this.time(s.counter, e.duration);
    });
  }

  private counter(side: ServerSide, command: string, target: string): CommandCounter {
    const key = `${side} ${command} ${target}`.trim();
    return (this.stats[key] ??= {
      side,
      command,
      target,
      count: 0,
      failed: 0,
      totalMs: 0,
      maxMs: 0,
      statements: 0,
      written: 0,
      returned: 0,
      lookups: 0,
    });
  }

  private time(counter: CommandCounter, ms: number): void {
    counter.totalMs += ms;
    counter.maxMs = Math.max(counter.maxMs, ms);
  }
}
