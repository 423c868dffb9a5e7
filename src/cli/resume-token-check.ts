import type { Db, Document, ResumeToken } from 'mongodb';
import { SYNC_COLLECTIONS } from '../lib/bidirectional-sync.constants';
import { MONGO_ERROR_CODES } from '../lib/common/mongo-error-codes';
import {
  errorCode,
  errorMessage,
  Finding,
  formatDuration,
  formatFindings,
  formatTable,
} from './cli-support';

/**
 * `ok`: a change stream opens from the token. `history-lost`: the server no
 * longer has the oplog entries after it (286 ChangeStreamHistoryLost).
 * `invalid`: the server rejects the token (260 InvalidResumeToken, 9
 * FailedToParse, 13 on a namespace mismatch, ...). `error`: the check itself
 * failed (network). `missing`: the document holds no token.
 */
export type ResumeTokenState = 'ok' | 'history-lost' | 'invalid' | 'error' | 'missing';

export interface ResumeTokenStatus {
  /** `_id` of the metadata document: `resume:<instanceId>:<stream>`. */
  id: string;
  instanceId: string;
  stream: string;
  /** True when the token belongs to the instance id stored in this database. */
  current: boolean;
  savedAt?: Date;
  ageMs?: number;
  /** The start of the token's `_data` (tokens are opaque; never reuse one across servers). */
  token?: string;
  state: ResumeTokenState;
  code?: number;
  detail?: string;
}

export interface ResumeTokenReport {
  ok: boolean;
  instanceId?: string;
  tokens: ResumeTokenStatus[];
  findings: Finding[];
}

const HISTORY_LOST = MONGO_ERROR_CODES.ChangeStreamHistoryLost;
/** The probe needs only the stream's first batch (or its error): wait briefly (ms). */
const PROBE_MAX_AWAIT_MS = 100;

/**
 * Lists the stored change stream positions (`resume:<instanceId>:atlas` and
 * `:local` in `_sync_metadata`) with their age and checks that each can
 * still be resumed: a database-level change stream is opened with
 * `startAfter` on the server it came from (Atlas or local) and read once,
 * as the engine does when it restarts. Nothing is written.
 */
export async function checkResumeTokens(options: {
  local: Db;
  atlas: Db;
  now?: Date;
}): Promise<ResumeTokenReport> {
  const { local, atlas } = options;
  const now = options.now ?? new Date();
  const findings: Finding[] = [];
  const metadata = local.collection<Document & { _id: string }>(SYNC_COLLECTIONS.metadata);
  const instance = await metadata.findOne({ _id: 'instance' });
  const instanceId = typeof instance?.instanceId === 'string' ? instance.instanceId : undefined;
  const docs = await metadata
    .find({ _id: { $regex: /^resume:/ } })
    .sort({ _id: 1 })
    .toArray();

  const tokens: ResumeTokenStatus[] = [];
  for (const doc of docs) {
    const cut = doc._id.lastIndexOf(':');
    const status: ResumeTokenStatus = {
      id: doc._id,
      instanceId: doc._id.slice('resume:'.length, cut),
      stream: doc._id.slice(cut + 1),
      current: false,
      state: 'missing',
    };
    status.current = status.instanceId === instanceId;
    if (doc.savedAt instanceof Date) {
      status.savedAt = doc.savedAt;
      status.ageMs = now.getTime() - doc.savedAt.getTime();
    }
    const data = (doc.token as { _data?: unknown } | undefined)?._data;
    if (typeof data === 'string')
      status.token = data.length > 24 ? `${data.slice(0, 24)}… (${data.length} hex)` : data;
    if (doc.token) {
      const db = status.stream === 'local' ? local : atlas;
      Object.assign(status, await probeToken(db, doc.token as ResumeToken));
    }
    tokens.push(status);
  }

  if (!instanceId) {
    findings.push({
      level: 'warn',
      message: 'no instance id stored: the sync module has not started on this database',
    });
  } else if (!tokens.some((t) => t.current && t.stream === 'atlas')) {
    findings.push({
      level: 'warn',
      message: `no Atlas resume token for instance "${instanceId}": the next start runs an initial sync / re-baseline`,
    });
  }
  for (const t of tokens) {
    const where = `${t.stream} token of ${t.current ? 'this instance' : `former instance "${t.instanceId}"`}`;
    const age = t.ageMs !== undefined ? `, saved ${formatDuration(t.ageMs)} ago` : '';
    const level = t.state === 'ok' ? 'ok' : t.current ? 'fail' : 'info';
    const message =
      t.state === 'ok'
        ? `${where} can be resumed${age}`
        : t.state === 'history-lost'
          ? `${where}: HISTORY LOST (${HISTORY_LOST})${age}; the oplog no longer reaches back to it. The engine re-baselines on its next start (nothing to do)`
          : t.state === 'invalid'
            ? `${where}: INVALID (${t.detail})${age}; the engine re-baselines on its next start`
            : t.state === 'missing'
              ? `${where}: document holds no token`
              : `${where}: could not be checked (${t.detail})`;
    findings.push({ level, message });
  }
  return {
    ok: !findings.some((f) => f.level === 'fail'),
    instanceId,
    tokens,
    findings,
  };
}

/** Opens a change stream right after `token` and reads once. */
async function probeToken(
  db: Db,
  token: ResumeToken,
): Promise<Pick<ResumeTokenStatus, 'state' | 'code' | 'detail'>> {
  const stream = db.watch([], { startAfter: token, maxAwaitTimeMS: PROBE_MAX_AWAIT_MS });
  try {
    await stream.tryNext();
    return { state: 'ok' };
  } catch (err) {
    const code = errorCode(err);
    const codeName = (err as { codeName?: string }).codeName;
    if (code === HISTORY_LOST || codeName === 'ChangeStreamHistoryLost')
      return { state: 'history-lost', code: HISTORY_LOST, detail: errorMessage(err) };
    if (code !== undefined)
      return {
        state: 'invalid',
        code,
        detail: `${code}${codeName ? ` ${codeName}` : ''}: ${errorMessage(err)}`,
      };
    return { state: 'error', detail: errorMessage(err) };
  } finally {
    await stream.close().catch(() => undefined);
  }
}

/** The report as text. */
export function formatResumeTokenReport(report: ResumeTokenReport): string {
  const lines: string[] = [];
  lines.push(`Instance id: ${report.instanceId ?? '(none)'}`);
  lines.push('');
  if (report.tokens.length) {
    lines.push('Stored resume tokens (_sync_metadata):');
    lines.push(
      formatTable(
        ['stream', 'instance', 'saved at', 'age', 'token', 'state'],
        report.tokens.map((t) => [
          t.stream,
          t.current ? `${t.instanceId} (this)` : t.instanceId,
          t.savedAt?.toISOString() ?? '-',
          t.ageMs !== undefined ? formatDuration(t.ageMs) : '-',
          t.token ?? '-',
          t.state.toUpperCase(),
        ]),
      ),
    );
    lines.push('');
  } else {
    lines.push('No resume tokens stored.');
    lines.push('');
  }
  lines.push('Checks:');
  lines.push(formatFindings(report.findings));
  lines.push('');
  lines.push(
    report.ok ? 'Result: OK' : 'Result: FAILED (a token of this instance cannot be resumed)',
  );
  return lines.join('\n');
}
