// The `podside` debug type: the backend turns a launch configuration into the real debugger's.
//
// Two ways to debug (see launch_templates/README.md). A launch: the debugger starts the
// wrapped program and the podside session ends with the debug session. `holdUntilAttached`:
// the backend runs the program with a debug server and answers an attach configuration; the
// debugger may leave (Disconnect) while the program keeps running, and when a request reaches
// the pod with no debugger attached the backend asks (`podside/attachDebugger`) and the
// debugger is attached again before the request is delivered.
import { oneLine, type AdapterSpec, type Backend, type DebugConfiguration, type DebugEnding, type DebugHooks, type Seam } from "../seam";

interface Resolved {
  debugConfiguration: DebugConfiguration;
  adapter: AdapterSpec | null;
  sessionId: string;
}

export class PodsideDebug implements DebugHooks {
  // Adapters the backend chose, by podside session, for as long as the session lives.
  private readonly adapters = new Map<string, AdapterSpec>();
  // How to attach again to the programs that outlive their debug sessions, by podside session.
  private readonly attachable = new Map<string, DebugConfiguration>();
  // Podside sessions with a debug session now, or one being started.
  private readonly debugging = new Set<string>();

  constructor(private readonly seam: Seam, private readonly backend: Backend) {}

  async resolve(_folder: string | undefined, configuration: DebugConfiguration): Promise<DebugConfiguration | undefined> {
    if (typeof configuration.podsideSessionId === "string") return configuration;
    if (configuration.type === undefined || configuration.runtime === undefined) {
      // F5 without launch.json: there is nothing to guess a target from.
      this.seam.showError("podside: add a \"Run with cluster context\" configuration to launch.json first");
      return undefined;
    }
    // The backend runs a held program itself, so it needs its paths with ${workspaceFolder}
    // and the like filled in: that happens in the second step, below.
    if (configuration.holdUntilAttached === true) return configuration;
    const resolved = await this.resolveByBackend(configuration);
    return resolved?.debugConfiguration;
  }

  async resolveSubstituted(_folder: string | undefined, configuration: DebugConfiguration): Promise<DebugConfiguration | undefined> {
    if (typeof configuration.podsideSessionId === "string" || configuration.holdUntilAttached !== true) return configuration;
    const resolved = await this.resolveByBackend(configuration);
    if (resolved === undefined) return undefined;
    // The program runs; the debugger attaches with the attach configuration, whatever its
    // type, as it will each time it comes back. This launch itself ends here, silently.
    void this.startAttach(resolved.sessionId, resolved.debugConfiguration, "the program is running");
    return undefined;
  }

  private async resolveByBackend(configuration: DebugConfiguration): Promise<Resolved | undefined> {
    const launch = { mode: this.seam.setting("defaultMode", "mirror"), ...configuration };
    this.seam.appendOutput(`podside: starting "${configuration.name}" on ${String(configuration.target)}`);
    let resolved: Resolved;
    try {
      resolved = await this.backend.command<Resolved>("podside.resolveLaunch", launch);
    } catch (error) {
      this.seam.appendOutput(`podside: ${oneLine(error)}`);
      this.seam.showError(oneLine(error));
      return undefined;
    }
    if (resolved.adapter !== null) this.adapters.set(resolved.sessionId, resolved.adapter);
    if (resolved.debugConfiguration.request === "attach") this.attachable.set(resolved.sessionId, resolved.debugConfiguration);
    this.debugging.add(resolved.sessionId);
    return resolved;
  }

  adapter(configuration: DebugConfiguration): AdapterSpec | undefined {
    const sessionId = sessionOf(configuration);
    return sessionId === undefined ? undefined : this.adapters.get(sessionId);
  }

  configured(configuration: DebugConfiguration): void {
    const sessionId = sessionOf(configuration);
    if (sessionId === undefined) return;
    this.debugging.add(sessionId);
    this.seam.appendOutput(`podside: the debugger of session ${sessionId} is ready`);
    this.tell("podside.debuggerAttached", { sessionId, attached: true });
  }

  terminated(configuration: DebugConfiguration, ending: DebugEnding): void {
    const sessionId = sessionOf(configuration);
    if (sessionId === undefined) return;
    this.debugging.delete(sessionId);
    if (this.attachable.has(sessionId) && ending === "detach") {
      // Disconnect: the program goes on; its next request brings the debugger back.
      this.tell("podside.debuggerAttached", { sessionId, attached: false });
      return;
    }
    this.sessionEnded(sessionId);
    this.tell("podside.stopSession", { sessionId });
  }

  /** No debug session will come (its adapter did not start): the podside session ends too. */
  adapterFailed(configuration: DebugConfiguration, message: string): void {
    const sessionId = sessionOf(configuration);
    this.seam.appendOutput(sessionId === undefined ? message : `podside: session ${sessionId} ends: ${message}`);
    this.terminated(configuration, "terminate");
  }

  /** The backend asks for a debugger for `sessionId`: a request waits for one. */
  async attach(sessionId: string, reason: string): Promise<void> {
    const configuration = this.attachable.get(sessionId);
    if (configuration === undefined || this.debugging.has(sessionId)) return;
    this.seam.setStatus(`$(debug-alt) podside: attaching the debugger: ${reason}`);
    await this.startAttach(sessionId, configuration, reason);
  }

  private async startAttach(sessionId: string, configuration: DebugConfiguration, reason: string): Promise<void> {
    this.debugging.add(sessionId);
    this.seam.appendOutput(`podside: attaching the debugger to session ${sessionId}: ${reason}`);
    let started: boolean;
    try {
      started = await this.seam.startDebugging(configuration);
    } catch (error) {
      started = false;
      this.seam.appendOutput(`podside: ${oneLine(error)}`);
    }
    if (!started) {
      this.debugging.delete(sessionId);
      this.seam.showError(`podside: could not attach the debugger to session ${sessionId}`);
    }
  }

  /** The podside session ended: nothing can attach to it any more. */
  sessionEnded(sessionId: string): void {
    this.adapters.delete(sessionId);
    this.attachable.delete(sessionId);
  }

  private tell(command: string, params: Record<string, unknown>): void {
    this.backend.command(command, params).catch((error: unknown) => this.seam.showError(oneLine(error)));
  }
}

function sessionOf(configuration: DebugConfiguration): string | undefined {
  const sessionId = configuration.podsideSessionId;
  return typeof sessionId === "string" ? sessionId : undefined;
}

/** Which launch template fits a program file. */
export function runtimeFor(program: string): string {
  if (/\.py$/.test(program)) return "python";
  if (/\.(c|m)?js$|\.ts$/.test(program)) return "node";
  if (/\.go$/.test(program)) return "go";
  return "command";
}
