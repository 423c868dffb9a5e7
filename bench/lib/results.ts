import type { BaselineResult } from '../scenarios/baseline';
import type { CatchupResult } from '../scenarios/catchup';
import type { FaninResult } from '../scenarios/fanin';
import type { LagResult } from '../scenarios/lag';
import type { MechanismResult } from '../scenarios/mechanism';
import type { PlannerResult } from '../scenarios/planner';
import type { ThroughputResult } from '../scenarios/throughput';
import type { Footprint } from './device-host';
import type { CpuShare } from './proc';
import type { ProfileSummary, topCommands } from './profile';

export interface MachineInfo {
  cpuModel: string;
  cpuCount: number;
  cpuMHz: number;
  totalMemGiB: number;
  node: string;
  /** Node flags of every device process: those `npm start` gives the service. */
  deviceNodeFlags?: string[];
  platform: string;
  kernel: string;
  loadAvgStart: number;
  loadAvgEnd?: number;
}

export interface BenchMeta {
  startedAt: string;
  finishedAt?: string;
  durationSeconds?: number;
  command: string;
  runs: number;
  machine: MachineInfo;
  servers: string;
  engineCommit: string;
  syncOptions: Record<string, unknown>;
  /** RSS of each server after each scenario (growth across the run shows here). */
  serverRssMiB: Record<string, Record<string, number>>;
  parameters: Record<string, unknown>;
}

export interface ProfileEntry {
  scenario: string;
  process: string;
  summary: ProfileSummary | null;
  commands: ReturnType<typeof topCommands>;
  serverCpu: Record<string, CpuShare>;
  footprint: Footprint;
}

export interface TargetResult {
  name: string;
  required: string;
  measured: string;
  met: boolean | null;
  note?: string;
}

export interface BenchResults {
  meta: BenchMeta;
  baseline?: BaselineResult;
  planner?: PlannerResult;
  throughput?: ThroughputResult;
  lag?: LagResult;
  catchup?: CatchupResult;
  fanin?: FaninResult[];
  mechanism?: MechanismResult;
  profiles?: ProfileEntry[];
  targets: TargetResult[];
}
