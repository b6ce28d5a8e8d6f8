// The node agent as the machine reconciler uses it; AgentService (service.ts) is the real one,
// reconciler tests give a fake. Types only: controllers depend on this, not on the service.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import type { ConditionInput } from '../runtime/conditions.ts';
import type { SshSession } from '../ssh/index.ts';

/** How an install went, when the connection held: installed, or why not (no runtime, no bundle). */
export type AgentInstall = { installed: true; certificate: AgentCertificate } | { installed: false; message: string };

/** The newest agent certificate of a host (BareMetalHost status.agentCertificate). */
export interface AgentCertificate {
  serial: string;
  notBefore: string;
}

export interface NodeAgent {
  /** Installs the agent; what prevents it is a result, an SSH failure is thrown. */
  installResult(conn: SshSession, m: BareMetalMachine, h: BareMetalHost): Promise<AgentInstall>;
  /**
   * HostHealthy now (written to the Node too); `changed` when the machine's condition differs.
   * Hosts are named <namespace>/<name> (objectKey).
   */
  sync(
    m: BareMetalMachine,
    host: string,
    node: string | undefined,
  ): Promise<{ condition: ConditionInput; changed: boolean } | undefined>;
  /** A certificate renewed since the host's status.agentCertificate was written, to record there. */
  unrecorded(h: BareMetalHost): AgentCertificate | undefined;
  /** Shell for the reset that removes the agent. */
  removeScript(): string;
  /** Drops what is known of a host's reports (it was reset). */
  forget(host: string): void;
}
