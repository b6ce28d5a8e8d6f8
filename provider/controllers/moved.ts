// A machine that came with `clusterctl move` finds its host again. clusterctl move creates every
// object anew on the target management cluster (new uids) and copies no status
// (cluster-api cmd/clusterctl/client/cluster/mover.go createTargetObject), so a moved
// BareMetalMachine has lost status.hostRef, and the host's spec.consumerRef still carries the uid
// the machine had on the source. What survives is spec: the consumer's name on the host, and the
// machine's providerID (capbm://<namespace>/<host>, set once it was provisioned). The host's own
// state (its phase) is read back from the host itself: the bootstrap's run markers on its disk
// say whether the bootstrap already ran, so the target attaches to that run and never starts it again.
import type { BareMetalHost } from '../api/host.ts';
import type { BareMetalMachine } from '../api/machine.ts';
import { providerID } from './metadata.ts';

/** clusterctl's annotation on a source object it is about to delete (cluster-api api/clusterctl/v1alpha3). */
export const DeleteForMoveAnnotation = 'clusterctl.cluster.x-k8s.io/delete-for-move';

/** Whether clusterctl move is deleting this object from the source: nothing of the host must be undone. */
export const deletedForMove = (o: { metadata: { annotations?: Record<string, string> } }): boolean =>
  o.metadata.annotations?.[DeleteForMoveAnnotation] !== undefined;

/**
 * The host this machine held before a move, if exactly one matches: its consumerRef names this
 * machine (namespace, name, kind) with another uid that no live machine has, and, when the machine
 * has a providerID, the host is the one it names. Pure: the caller passes the namespace's hosts
 * and the uids of the machines that exist.
 */
export function movedHostOf(
  m: Pick<BareMetalMachine, 'metadata' | 'spec'>,
  hosts: BareMetalHost[],
  liveUids: ReadonlySet<string>,
): BareMetalHost | undefined {
  const ns = m.metadata.namespace;
  const uid = m.metadata.uid ?? '';
  const named = hosts.filter((h) => {
    const c = h.spec.consumerRef;
    return (
      h.metadata.namespace === ns &&
      c?.kind === 'BareMetalMachine' &&
      c.namespace === ns &&
      c.name === m.metadata.name &&
      c.uid !== uid &&
      !liveUids.has(c.uid)
    );
  });
  const id = m.spec.providerID;
  const found = id ? named.filter((h) => providerID(ns, h.metadata.name) === id) : named;
  return found.length === 1 ? found[0] : undefined;
}

/** The bootstrap run markers on a host (host-ops.ts runDir), as markersScript prints them. */
export interface RunMarkers {
  /** The run's exit code file, if the run ended. */
  rc?: number;
  /** The run was started (its pid file exists). */
  started: boolean;
  /** CABPK's success sentinel exists. */
  sentinel: boolean;
}

/** Reads `rc=<n|none> started=<yes|no> sentinel=<yes|no>` (one line). */
export function parseMarkers(line: string): RunMarkers {
  const kv = new Map(
    line
      .trim()
      .split(/\s+/)
      .map((p) => p.split('=') as [string, string]),
  );
  const rc = kv.get('rc');
  if (rc === undefined || !kv.has('started') || !kv.has('sentinel'))
    throw new Error(`unexpected run markers from the host: ${JSON.stringify(line.slice(0, 200))}`);
  return {
    ...(rc !== 'none' && /^\d+$/.test(rc) ? { rc: Number(rc) } : {}),
    started: kv.get('started') === 'yes' || rc !== 'none',
    sentinel: kv.get('sentinel') === 'yes',
  };
}

/**
 * The phase an adopted host resumes in. A run was started: Provisioning (its preflight passed
 * before), and the bootstrap step attaches to the run, finished or not, instead of starting one
 * (host-ops.ts runScript). No run: Claimed, so the preflight comes first, as for any new claim.
 */
export function adoptedPhase(mk: RunMarkers): 'Provisioning' | 'Claimed' {
  return mk.started || mk.sentinel ? 'Provisioning' : 'Claimed';
}

/** What the operator is told about an adoption. */
export function adoptionMessage(host: string, address: string, mk: RunMarkers): string {
  const ran =
    mk.rc === 0 && mk.sentinel
      ? 'its bootstrap already ran and succeeded: not run again'
      : mk.rc !== undefined
        ? `its bootstrap already ran and ended with exit code ${mk.rc}: not run again`
        : mk.started
          ? 'its bootstrap is still running: followed, not started again'
          : 'no bootstrap ran on it yet';
  return `Host ${host} (${address}) is held by this machine since before a clusterctl move; ${ran}`;
}
