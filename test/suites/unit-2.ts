// Unit tests, shard 2 of 2, in one process (see test/support/unit-shard.ts).
import { runUnitShard } from '../support/unit-shard.js';

await runUnitShard(2, 2);
