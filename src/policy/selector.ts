// metav1.LabelSelector, checked and matched. Selectors come from API objects
// anyone with write access to a namespace can create, so every field is
// validated as the API server would (key and value syntax, operators and
// their value lists) and a bad one becomes a reason, never an exception.

/** One requirement every matching label set meets. matchLabels entries become `In` with one value. */
export interface Requirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: ReadonlySet<string>;
}

/** A checked selector: all requirements must hold. No requirements selects everything. */
export interface Selector {
  requirements: readonly Requirement[];
}

export type SelectorResult = { ok: true; selector: Selector } | { ok: false; reason: string };

const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
const NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A value quoted for a one-line message, whatever it holds. */
export function shown(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}

/** A JSON object (not null, not a list). */
export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Why `key` is not a label key ("prefix/name" or "name"), or undefined when it is one. */
export function labelKeyProblem(key: unknown): string | undefined {
  if (typeof key !== 'string') return `label key ${shown(key)} is not a string`;
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key ${shown(key)} has a prefix that is not a DNS subdomain`;
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return `label key ${shown(key)} is not 1-63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit`;
  }
  return undefined;
}

/** Why `value` is not a label value (empty, or up to 63 of the key characters), or undefined when it is one. */
export function labelValueProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `label value ${shown(value)} is not a string`;
  if (value.length > 63 || (value !== '' && !NAME.test(value))) {
    return `label value ${shown(value)} is not empty or 1-63 letters, digits, '-', '_' or '.' starting and ending with a letter or digit`;
  }
  return undefined;
}

/**
 * Checks a LabelSelector from an API object. `field` names where it sits
 * ("spec.podSelector") so the reason points at the exact place to fix.
 */
export function parseSelector(input: unknown, field: string): SelectorResult {
  const fail = (reason: string): SelectorResult => ({ ok: false, reason });
  if (!isObject(input)) return fail(`${field}: ${shown(input)} is not a label selector object; give {} to select everything`);
  const requirements: Requirement[] = [];
  const { matchLabels, matchExpressions } = input;
  if (matchLabels !== undefined && matchLabels !== null) {
    if (!isObject(matchLabels)) return fail(`${field}.matchLabels: ${shown(matchLabels)} is not a map of label keys to values`);
    for (const [key, value] of Object.entries(matchLabels)) {
      const problem = labelKeyProblem(key) ?? labelValueProblem(value);
      if (problem) return fail(`${field}.matchLabels: ${problem}; fix the label`);
      requirements.push({ key, operator: 'In', values: new Set([value as string]) });
    }
  }
  if (matchExpressions !== undefined && matchExpressions !== null) {
    if (!Array.isArray(matchExpressions)) return fail(`${field}.matchExpressions: ${shown(matchExpressions)} is not a list`);
    for (const [i, expr] of matchExpressions.entries()) {
      const at = `${field}.matchExpressions[${i}]`;
      if (!isObject(expr)) return fail(`${at}: ${shown(expr)} is not an object with key, operator and values`);
      const keyProblem = labelKeyProblem(expr.key);
      if (keyProblem) return fail(`${at}.key: ${keyProblem}; fix the key`);
      const operator = expr.operator;
      if (typeof operator !== 'string' || !(OPERATORS as readonly string[]).includes(operator)) {
        return fail(`${at}.operator: ${shown(operator)} is not In, NotIn, Exists or DoesNotExist; use one of those`);
      }
      const op = operator as Requirement['operator'];
      const values = expr.values ?? [];
      if (!Array.isArray(values)) return fail(`${at}.values: ${shown(values)} is not a list of label values`);
      for (const v of values) {
        const problem = labelValueProblem(v);
        if (problem) return fail(`${at}.values: ${problem}; fix the value`);
      }
      if ((op === 'In' || op === 'NotIn') && values.length === 0) {
        return fail(`${at}.values: ${op} needs at least one value; add values or use ${op === 'In' ? 'Exists' : 'DoesNotExist'}`);
      }
      if ((op === 'Exists' || op === 'DoesNotExist') && values.length > 0) {
        return fail(`${at}.values: ${op} takes no values; remove them or use ${op === 'Exists' ? 'In' : 'NotIn'}`);
      }
      requirements.push({ key: expr.key as string, operator: op, values: new Set(values as string[]) });
    }
  }
  return { ok: true, selector: { requirements } };
}

/** Whether `labels` meet every requirement of `selector`. */
export function matchesSelector(selector: Selector, labels: Readonly<Record<string, string>>): boolean {
  return selector.requirements.every((r) => {
    // Own properties only: a key such as "constructor" must not find Object.prototype's.
    const has = Object.hasOwn(labels, r.key);
    switch (r.operator) {
      case 'In':
        return has && r.values.has(labels[r.key]!);
      case 'NotIn':
        return !has || !r.values.has(labels[r.key]!);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
    }
  });
}

/** True when the selector selects every label set. */
export const selectsAll = (selector: Selector): boolean => selector.requirements.length === 0;
