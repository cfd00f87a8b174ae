// How the agent follows net-conf.json after start: a source reports the text
// now and again whenever it changes (a file in src/agent, the etcd key in
// src/subnet/etcd); what the text means is the agent's business.

/** The config text, or why there is none (file missing, key deleted). */
export type NetConfUpdate = { text: string } | { unreadable: string };

export interface NetConfSource {
  /** Where the config lives, for log lines. */
  readonly where: string;
  /** Calls `onUpdate` with the current state, then on every change, until `signal` aborts. Never throws. */
  watch(onUpdate: (update: NetConfUpdate) => void, signal: AbortSignal): Promise<void>;
}

/** Reports each distinct update once: re-reads that find the same text say nothing. */
export function deduplicated(onUpdate: (update: NetConfUpdate) => void): (update: NetConfUpdate) => void {
  let last: string | undefined;
  return (update) => {
    const key = 'text' in update ? `t${update.text}` : `u${update.unreadable}`;
    if (key === last) return;
    last = key;
    onUpdate(update);
  };
}

