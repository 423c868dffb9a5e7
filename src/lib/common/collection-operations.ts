import type { ChangeStreamDocument } from 'mongodb';

/** Change events that carry one document's new state (or its deletion). */
export const DATA_OPERATIONS = ['insert', 'update', 'replace', 'delete'] as const;

/** Change events about a whole collection, which the engine reports but does not replay. */
export const COLLECTION_OPERATIONS = ['drop', 'rename'] as const;

/**
 * What the user needs to know when a synced collection is dropped or renamed
 * on one side. Neither propagates: replaying a drop would delete data on
 * every device at once, and a rename cannot be told from a drop plus new
 * data. The documents stay on the other side, and the next re-baseline
 * copies them back; deleting documents (`deleteMany`) removes them everywhere.
 * Undefined for any other event.
 */
export function collectionOperationWarning(
  side: 'local' | 'atlas',
  event: ChangeStreamDocument,
): string | undefined {
  const op = event.operationType;
  if (!(COLLECTION_OPERATIONS as readonly string[]).includes(op)) return undefined;
  const e = event as { ns?: { coll?: string }; to?: { coll?: string } };
  const where = side === 'local' ? 'Local' : 'Atlas';
  const other = side === 'local' ? 'Atlas' : 'the devices';
  const what = op === 'rename' ? `was renamed to "${e.to?.coll ?? '?'}"` : 'was dropped';
  return `${where} collection "${e.ns?.coll ?? '?'}" ${what}: not propagated; its documents stay on ${other} and a re-baseline copies them back. Delete documents (deleteMany) to remove them everywhere.`;
}
