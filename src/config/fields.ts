// Typed reads of JSON object fields for net-conf.json and the backends' own
// keys. Every failure is a ConfigError naming the field and the reason.
import { ConfigError } from './netconf.js';

export type JsonObject = Record<string, unknown>;

/** The JSON name of a value's type, as a user reading their file would say it. */
export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value}`;
}

function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Rejects keys outside `known`, suggesting the known key it differs from only in case. */
export function rejectUnknownKeys(obj: JsonObject, known: readonly string[], where = ''): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const sameLetters = known.find((k) => k.toLowerCase() === key.toLowerCase());
    const hint = sameLetters ? ` (did you mean "${where}${sameLetters}"?)` : '';
    const name = JSON.stringify(`${where}${key}`.slice(0, 64));
    throw new ConfigError(`unknown key ${name}${hint}; known keys: ${known.map((k) => where + k).join(', ')}`);
  }
}

export interface IntegerRange {
  min: number;
  max: number;
}

/** An integer field within [min, max], or undefined when absent. */
export function optionalInteger(obj: JsonObject, key: string, range: IntegerRange, where = ''): number | undefined {
  const value = obj[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ConfigError(`${where}${key} must be an integer, got ${jsonType(value)} ${shown(value)}`);
  }
  if (value < range.min || value > range.max) {
    throw new ConfigError(`${where}${key} ${value} is out of range ${range.min}..${range.max}`);
  }
  return value;
}

export function optionalBoolean(obj: JsonObject, key: string, where = ''): boolean | undefined {
  const value = obj[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') {
    throw new ConfigError(`${where}${key} must be true or false, got ${jsonType(value)} ${shown(value)}`);
  }
  return value;
}

export function optionalString(obj: JsonObject, key: string, where = ''): string | undefined {
  const value = obj[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new ConfigError(`${where}${key} must be a string, got ${jsonType(value)} ${shown(value)}`);
  }
  return value;
}
