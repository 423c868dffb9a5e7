/**
 * Sections of docs/benchmarks.md that a partial run may replace on its own
 * (`npm run bench -- --only mechanism --docs`), leaving the sections another
 * run (a full one, of another commit) produced as they were. A replaceable
 * section sits between two HTML comments that name it.
 */

const startMarker = (key: string) => `<!-- section:${key} -->`;
const endMarker = (key: string) => `<!-- /section:${key} -->`;

/** A section's lines between its markers (and a blank line after). */
export function markSection(key: string, lines: string[]): string[] {
  const body = [...lines];
  while (body.length && body[body.length - 1] === '') body.pop();
  return [startMarker(key), ...body, endMarker(key), ''];
}

const isHeading = (line: string) => /^#{1,2} /.test(line);

/**
 * The page with section `key` replaced by `block` (lines from `markSection`):
 * between its markers when the page has them; else, on a page rendered
 * before it had markers, from the line starting with `heading` to the next
 * `#`/`##` heading (or the end); else inserted before the line starting
 * with `insertBefore`, or appended.
 */
export function replaceSection(
  page: string,
  key: string,
  block: string[],
  where: { heading?: string; insertBefore?: string } = {},
): string {
  const lines = page.split('\n');
  const start = lines.indexOf(startMarker(key));
  const end = start < 0 ? -1 : lines.indexOf(endMarker(key), start);
  if (start >= 0 && end < 0) throw new Error(`docs: section ${key} has no end marker`);
  let from: number;
  let to: number; // exclusive
  if (start >= 0) {
    from = start;
    to = end + 1;
    if (lines[to] === '') to++;
  } else {
    const h = where.heading ? lines.findIndex((l) => l.startsWith(where.heading!)) : -1;
    if (h >= 0) {
      from = h;
      to = lines.findIndex((l, i) => i > h && isHeading(l));
      if (to < 0) to = lines.length;
    } else {
      const before = where.insertBefore
        ? lines.findIndex((l) => l.startsWith(where.insertBefore!))
        : -1;
      from = to = before >= 0 ? before : lines.length;
      // Appended: the block's own blank line ends the page.
      if (before < 0 && lines[lines.length - 1] === '') from = lines.length - 1;
    }
  }
  const out = [...lines.slice(0, from), ...block, ...lines.slice(to)];
  return out.join('\n');
}

/**
 * docs/benchmarks.json with the keys a partial run produced put in (or
 * replaced); everything else is kept as the full run wrote it.
 */
export function mergeResults(
  existing: Record<string, unknown> | undefined,
  partial: Record<string, unknown>,
  keys: string[],
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...(existing ?? {}) };
  for (const k of keys) if (partial[k] !== undefined) merged[k] = partial[k];
  return merged;
}
