// Unit tests, shard 1 of 2, in one process (see test/support/unit-shard.ts).
import { runUnitShard } from '../support/unit-shard.js';

await runUnitShard(1, 2);
