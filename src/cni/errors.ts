// CNI errors as the spec defines them: a code, a one-line message and details,
// printed as JSON on stdout with a non-zero exit.

/** Codes 1-99 are the spec's; 100+ are weft's own. */
export const CniCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  /** A delegate plugin (bridge, host-local) is not in CNI_PATH. */
  delegateMissing: 100,
  /** A delegate plugin failed without printing a CNI error of its own. */
  delegateFailed: 101,
  /** The pod was set up for a node subnet the node no longer has. */
  staleSubnet: 102,
  /** A pinned address another pod holds or has reserved (weft-ipam); the message names it. */
  addressConflict: 110,
  /** A pinned address that can never be handed out here: outside the Network, a gateway, a broadcast. */
  invalidAddress: 111,
} as const;

export class CniError extends Error {
  constructor(readonly code: number, msg: string, readonly details = '') {
    super(msg);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    const out: { cniVersion: string; code: number; msg: string; details?: string } = { cniVersion, code: this.code, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

/**
 * A delegate's own CNI error, passed through untouched so the runtime sees
 * the code and message the real culprit chose.
 */
export class DelegateError extends Error {
  constructor(readonly output: string) {
    super('delegate plugin failed');
    this.name = 'DelegateError';
  }
}
