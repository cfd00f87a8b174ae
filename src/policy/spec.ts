// A NetworkPolicy spec read into what the compiler needs, checked field by
// field as the API server would. Whatever cannot be used becomes a one-line
// problem naming the field and the fix, and fails closed: a bad port or rule
// allows nothing, a bad peer allows nothing (the rule's other peers still
// do), unreadable policyTypes isolate both directions, and only a bad
// podSelector (nothing to enforce on) makes the policy ignored.
import { Cidr, type Family } from '../core/cidr.js';
import { subtract, type Range } from './intervals.js';
import { isObject, parseSelector, shown, type Selector } from './selector.js';
import type { PodInfo } from './types.js';

export type Direction = 'ingress' | 'egress';
export type Protocol = 'tcp' | 'udp' | 'sctp';
export const PROTOCOLS: Record<string, Protocol> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };

export interface PortEntry {
  protocol: Protocol;
  /** A number, a container port name, or absent for every port of the protocol. */
  port?: number | string;
  endPort?: number;
}

export type Peer =
  | { kind: 'pods'; namespaces?: Selector; pods?: Selector }
  | { kind: 'block'; family: Family; ranges: Range[] };

export interface Rule {
  /** 'all' when from/to is absent or empty. */
  peers: 'all' | Peer[];
  /** 'all' when ports is absent or empty. */
  ports: 'all' | PortEntry[];
}

export interface Policy {
  namespace: string;
  selector: Selector;
  /** Absent when the policy does not apply to that direction. */
  ingress?: Rule[];
  egress?: Rule[];
}

/** The container port a named port entry refers to on `pod` (same name and protocol), if it declares one. */
export function namedPort(pod: PodInfo | undefined, e: PortEntry): number | undefined {
  return pod?.ports.find((p) => p.name === e.port && PROTOCOLS[p.protocol] === e.protocol)?.containerPort;
}

const present = (v: unknown): boolean => v !== undefined && v !== null;
/** IANA_SVC_NAME, what a container port name must be. */
const PORT_NAME = /^(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;

/** Reads one policy's spec; what cannot be used is reported and allows nothing. */
export class PolicyReader {
  readonly problems: string[] = [];

  private problem(field: string, text: string, effect: string): void {
    this.problems.push(`${field}: ${text} (${effect})`);
  }

  read(namespace: string, spec: unknown): Policy | undefined {
    if (!isObject(spec)) {
      this.problem('spec', `${shown(spec)} is not an object; give the policy a spec`, 'policy ignored');
      return undefined;
    }
    // An absent podSelector is the empty one: every pod in the namespace.
    const sel = parseSelector(spec.podSelector ?? {}, 'spec.podSelector');
    if (!sel.ok) {
      this.problems.push(`${sel.reason} (policy ignored)`);
      return undefined;
    }
    const policy: Policy = { namespace, selector: sel.selector };
    const types = this.policyTypes(spec);
    if (types.has('Ingress')) policy.ingress = this.rules(spec.ingress, 'ingress');
    if (types.has('Egress')) policy.egress = this.rules(spec.egress, 'egress');
    return policy;
  }

  /** spec.policyTypes, or its default: Ingress always, Egress when egress rules exist. Unreadable: both (fail closed). */
  private policyTypes(spec: Record<string, unknown>): Set<string> {
    const both = new Set(['Ingress', 'Egress']);
    const types = spec.policyTypes;
    if (!present(types)) {
      const hasEgress = present(spec.egress) && !(Array.isArray(spec.egress) && spec.egress.length === 0);
      return new Set(hasEgress ? ['Ingress', 'Egress'] : ['Ingress']);
    }
    if (!Array.isArray(types) || types.length === 0) {
      this.problem('spec.policyTypes', `${shown(types)} is not a list of Ingress and Egress; list the directions the policy isolates`, 'both directions isolated');
      return both;
    }
    const bad = types.find((x) => x !== 'Ingress' && x !== 'Egress');
    if (bad !== undefined) {
      this.problem('spec.policyTypes', `${shown(bad)} is not Ingress or Egress; use those`, 'both directions isolated');
      return both;
    }
    return new Set(types as string[]);
  }

  private rules(input: unknown, dir: Direction): Rule[] {
    if (!present(input)) return [];
    if (!Array.isArray(input)) {
      this.problem(`spec.${dir}`, `${shown(input)} is not a list of rules`, `no ${dir} allowed`);
      return [];
    }
    return input.flatMap((raw, i) => {
      const rule = this.rule(raw, `spec.${dir}[${i}]`, dir === 'ingress' ? 'from' : 'to');
      return rule ? [rule] : [];
    });
  }

  private rule(raw: unknown, at: string, peersKey: 'from' | 'to'): Rule | undefined {
    const denied = 'this rule allows nothing';
    if (!isObject(raw)) {
      this.problem(at, `${shown(raw)} is not an object with ${peersKey} and ports`, denied);
      return undefined;
    }
    const rawPorts = raw.ports;
    let ports: Rule['ports'] = 'all';
    if (present(rawPorts)) {
      if (!Array.isArray(rawPorts)) {
        this.problem(`${at}.ports`, `${shown(rawPorts)} is not a list of ports`, denied);
        return undefined;
      }
      if (rawPorts.length) {
        const entries = rawPorts.map((p, i) => this.port(p, `${at}.ports[${i}]`));
        if (entries.some((e) => e === undefined)) return undefined;
        ports = entries as PortEntry[];
      }
    }
    const rawPeers = raw[peersKey];
    let peers: Rule['peers'] = 'all';
    if (present(rawPeers)) {
      if (!Array.isArray(rawPeers)) {
        this.problem(`${at}.${peersKey}`, `${shown(rawPeers)} is not a list of peers`, denied);
        return undefined;
      }
      if (rawPeers.length) {
        // A bad peer allows nothing; the rule's other peers still do. All bad: the rule allows nothing, never everything.
        peers = rawPeers.flatMap((p, i) => {
          const peer = this.peer(p, `${at}.${peersKey}[${i}]`);
          return peer ? [peer] : [];
        });
        if (!peers.length) return undefined;
      }
    }
    return { peers, ports };
  }

  private peer(raw: unknown, at: string): Peer | undefined {
    const denied = 'this peer allows nothing';
    if (!isObject(raw)) {
      this.problem(at, `${shown(raw)} is not an object with podSelector, namespaceSelector or ipBlock`, denied);
      return undefined;
    }
    const { podSelector, namespaceSelector, ipBlock } = raw;
    if (present(ipBlock)) {
      if (present(podSelector) || present(namespaceSelector)) {
        this.problem(at, 'ipBlock is combined with a selector; make them separate peers', denied);
        return undefined;
      }
      return this.ipBlock(ipBlock, `${at}.ipBlock`);
    }
    if (!present(podSelector) && !present(namespaceSelector)) {
      this.problem(at, 'names no podSelector, namespaceSelector or ipBlock; give one', denied);
      return undefined;
    }
    const peer: Peer = { kind: 'pods' };
    for (const [key, value] of [['podSelector', podSelector], ['namespaceSelector', namespaceSelector]] as const) {
      if (!present(value)) continue;
      const sel = parseSelector(value, `${at}.${key}`);
      if (!sel.ok) {
        this.problems.push(`${sel.reason} (${denied})`);
        return undefined;
      }
      if (key === 'podSelector') peer.pods = sel.selector;
      else peer.namespaces = sel.selector;
    }
    return peer;
  }

  private ipBlock(raw: unknown, at: string): Peer | undefined {
    const denied = 'this peer allows nothing';
    if (!isObject(raw)) {
      this.problem(at, `${shown(raw)} is not an object with cidr and except`, denied);
      return undefined;
    }
    let cidr: Cidr;
    try {
      // The API server accepts host bits ("10.0.0.1/8"); they are masked off, as net.ParseCIDR does.
      cidr = Cidr.parse(raw.cidr as string, { loose: true });
    } catch (err) {
      this.problem(`${at}.cidr`, `${(err as Error).message}; give a CIDR such as 192.0.2.0/24`, denied);
      return undefined;
    }
    const except = raw.except ?? [];
    if (!Array.isArray(except)) {
      this.problem(`${at}.except`, `${shown(except)} is not a list of CIDRs`, denied);
      return undefined;
    }
    const cuts: Range[] = [];
    for (const [i, text] of except.entries()) {
      let ex: Cidr;
      try {
        ex = Cidr.parse(text as string, { loose: true });
      } catch (err) {
        this.problem(`${at}.except[${i}]`, `${(err as Error).message}; give a CIDR inside ${cidr}`, denied);
        return undefined;
      }
      if (!cidr.covers(ex)) {
        this.problem(`${at}.except[${i}]`, `${ex} is not inside ${cidr}; give a CIDR inside it`, denied);
        return undefined;
      }
      cuts.push([ex.ip.value, ex.last.value]);
    }
    return { kind: 'block', family: cidr.family, ranges: subtract([cidr.ip.value, cidr.last.value], cuts) };
  }

  private port(raw: unknown, at: string): PortEntry | undefined {
    const denied = 'this rule allows nothing';
    if (!isObject(raw)) {
      this.problem(at, `${shown(raw)} is not an object with protocol, port and endPort`, denied);
      return undefined;
    }
    const name = present(raw.protocol) ? raw.protocol : 'TCP';
    // Own keys only: "constructor" is no protocol.
    const protocol = typeof name === 'string' && Object.hasOwn(PROTOCOLS, name) ? PROTOCOLS[name] : undefined;
    if (!protocol) {
      this.problem(`${at}.protocol`, `${shown(raw.protocol)} is not TCP, UDP or SCTP; use one of those`, denied);
      return undefined;
    }
    const entry: PortEntry = { protocol };
    const { port, endPort } = raw;
    if (present(port)) {
      if (typeof port === 'number') {
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          this.problem(`${at}.port`, `${shown(port)} is not a port number 1-65535; fix the number`, denied);
          return undefined;
        }
      } else if (typeof port !== 'string' || !PORT_NAME.test(port)) {
        this.problem(`${at}.port`, `${shown(port)} is neither a number nor a container port name (1-15 lowercase letters, digits, '-'); fix it`, denied);
        return undefined;
      }
      entry.port = port;
    }
    if (present(endPort)) {
      if (typeof entry.port !== 'number') {
        this.problem(`${at}.endPort`, 'needs a numeric port to start the range; give port a number or remove endPort', denied);
        return undefined;
      }
      if (typeof endPort !== 'number' || !Number.isInteger(endPort) || endPort < entry.port || endPort > 65535) {
        this.problem(`${at}.endPort`, `${shown(endPort)} is not a port from ${entry.port} to 65535; fix the range`, denied);
        return undefined;
      }
      entry.endPort = endPort;
    }
    return entry;
  }
}
