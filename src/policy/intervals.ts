// Address and port intervals: what nft interval sets hold. Merged here into
// sorted, disjoint, non-adjacent intervals, because a set without auto-merge
// refuses overlaps and lists back exactly the elements it was given.
import { IP, type Family } from '../core/cidr.js';

/** Inclusive address interval of one family, as numbers. */
export type Range = [bigint, bigint];

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Sorted, disjoint and non-adjacent: what an interval set without auto-merge takes and lists back unchanged. */
export function mergeRanges<T extends bigint | number>(ranges: [T, T][]): [T, T][] {
  const sorted = [...ranges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [T, T][] = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    // Adjacent too: last.hi + 1 >= lo, written without mixing bigint and number.
    if (last && (last[1] >= lo || (typeof lo === 'bigint' ? (last[1] as bigint) + 1n === lo : (last[1] as number) + 1 === lo))) {
      if (hi > last[1]) last[1] = hi;
    } else {
      out.push([lo, hi]);
    }
  }
  return out;
}

/** An interval as an nft element: an address, a prefix when it is one, else first-last. */
export function rangeText(family: Family, [lo, hi]: Range): string {
  const first = IP.of(family, lo);
  if (lo === hi) return first.toString();
  const size = hi - lo + 1n;
  if ((size & (size - 1n)) === 0n && lo % size === 0n) {
    return `${first}/${BITS[family] - (size.toString(2).length - 1)}`;
  }
  return `${first}-${IP.of(family, hi)}`;
}

/** `whole` without the `cuts` (all inside it): one sweep over the merged cuts, so a long except list costs n log n. */
export function subtract(whole: Range, cuts: Range[]): Range[] {
  const out: Range[] = [];
  let next = whole[0];
  for (const [lo, hi] of mergeRanges(cuts)) {
    if (lo > next) out.push([next, lo - 1n]);
    next = hi + 1n;
  }
  if (next <= whole[1]) out.push([next, whole[1]]);
  return out;
}
