// Address arithmetic for IPv4 and IPv6 in one code path: the family is a
// parameter (bit width), never a second copy of the code.
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

const WIDTH: Record<Family, number> = { 4: 32, 6: 128 };

/** An IP address as a family plus an unsigned integer. */
export class IP {
  /** The text form, made once: backends render every peer's addresses on every lease event (private: not part of equality). */
  #text?: string;

  private constructor(readonly family: Family, readonly value: bigint) {}

  static parse(text: string): IP {
    if (typeof text !== 'string' || !ipaddr.isValid(text)) {
      throw new Error(`"${String(text).slice(0, 64)}" is not an IP address`);
    }
    const addr = ipaddr.parse(text);
    // A strict dotted quad only: ipaddr.js also accepts "10.1" and octal forms.
    if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(text)) {
      throw new Error(`"${text.slice(0, 64)}" is not a dotted-quad IPv4 address`);
    }
    // A zone ("fe80::1%eth0") says which link, which a bare value cannot keep: refused, not dropped.
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).zoneId !== undefined) {
      throw new Error(`"${text.slice(0, 64)}" has a zone (%...); give the address alone`);
    }
    const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
    let value = 0n;
    for (const b of addr.toByteArray()) value = (value << 8n) | BigInt(b);
    return new IP(family, value);
  }

  static of(family: Family, value: bigint): IP {
    const max = (1n << BigInt(WIDTH[family])) - 1n;
    if (value < 0n || value > max) throw new Error(`address value out of range for IPv${family}`);
    return new IP(family, value);
  }

  get bits(): number {
    return WIDTH[this.family];
  }

  add(n: bigint | number): IP {
    return IP.of(this.family, this.value + BigInt(n));
  }

  equals(other: IP): boolean {
    return this.family === other.family && this.value === other.value;
  }

  toBytes(): number[] {
    const out: number[] = [];
    let v = this.value;
    for (let i = 0; i < this.bits / 8; i++) {
      out.unshift(Number(v & 0xffn));
      v >>= 8n;
    }
    return out;
  }

  toString(): string {
    return (this.#text ??= ipaddr.fromByteArray(this.toBytes()).toString());
  }
}

/** A network prefix whose address has no host bits set. */
export class Cidr {
  #text?: string;
  #key?: string;

  private constructor(readonly ip: IP, readonly prefixLen: number) {}

  /** Parses "10.1.0.0/16"; host bits must be zero unless `loose` is set. */
  static parse(text: string, opts: { loose?: boolean } = {}): Cidr {
    if (typeof text !== 'string') throw new Error('a CIDR must be a string');
    const slash = text.indexOf('/');
    if (slash < 0) throw new Error(`"${text.slice(0, 64)}" is not a CIDR (no /prefix)`);
    const ip = IP.parse(text.slice(0, slash));
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText)) throw new Error(`"${text.slice(0, 64)}" has a bad prefix length`);
    const len = Number(lenText);
    if (len > ip.bits) throw new Error(`"${text.slice(0, 64)}" has a prefix longer than /${ip.bits}`);
    const c = new Cidr(ip, len);
    if (!opts.loose && (ip.value & c.hostMask) !== 0n) {
      throw new Error(`"${text.slice(0, 64)}" has host bits set (did you mean ${Cidr.of(ip, len)}?)`);
    }
    return opts.loose ? Cidr.of(ip, len) : c;
  }

  /** The prefix of `len` bits containing `ip`. */
  static of(ip: IP, len: number): Cidr {
    if (!Number.isInteger(len) || len < 0 || len > ip.bits) throw new Error(`bad prefix length ${len}`);
    const hostMask = (1n << BigInt(ip.bits - len)) - 1n;
    return new Cidr(IP.of(ip.family, ip.value & ~hostMask), len);
  }

  get family(): Family {
    return this.ip.family;
  }

  get hostMask(): bigint {
    return (1n << BigInt(this.ip.bits - this.prefixLen)) - 1n;
  }

  /** Number of addresses in the prefix. */
  get size(): bigint {
    return 1n << BigInt(this.ip.bits - this.prefixLen);
  }

  get last(): IP {
    return IP.of(this.family, this.ip.value | this.hostMask);
  }

  contains(ip: IP): boolean {
    return ip.family === this.family && (ip.value & ~this.hostMask) === this.ip.value;
  }

  /** True when `inner` lies wholly inside this prefix. */
  covers(inner: Cidr): boolean {
    return inner.family === this.family && inner.prefixLen >= this.prefixLen && this.contains(inner.ip);
  }

  overlaps(other: Cidr): boolean {
    return this.covers(other) || other.covers(this);
  }

  equals(other: Cidr): boolean {
    return this.prefixLen === other.prefixLen && this.ip.equals(other.ip);
  }

  /** The i-th sub-prefix of length `len` (0-based). */
  subnet(len: number, index: bigint): Cidr {
    const step = 1n << BigInt(this.ip.bits - len);
    return Cidr.of(this.ip.add(step * index), len);
  }

  /** Index of `inner` among this prefix's sub-prefixes of its length. */
  indexOf(inner: Cidr): bigint {
    return (inner.ip.value - this.ip.value) >> BigInt(this.ip.bits - inner.prefixLen);
  }

  /** Flannel's key form: "10.5.3.0-24". */
  toKey(): string {
    return (this.#key ??= `${this.ip}-${this.prefixLen}`);
  }

  static fromKey(key: string): Cidr {
    const dash = key.lastIndexOf('-');
    if (dash < 0) throw new Error(`"${key.slice(0, 64)}" is not a subnet key (want ip-len)`);
    return Cidr.parse(`${key.slice(0, dash)}/${key.slice(dash + 1)}`);
  }

  toString(): string {
    return (this.#text ??= `${this.ip}/${this.prefixLen}`);
  }
}
