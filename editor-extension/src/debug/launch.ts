// The `podside` debug type: the backend turns a launch configuration into the real debugger's.
import { oneLine, type AdapterSpec, type Backend, type DebugConfiguration, type DebugHooks, type Seam } from "../seam";

interface Resolved {
  debugConfiguration: DebugConfiguration;
  adapter: AdapterSpec | null;
  sessionId: string;
}

export class PodsideDebug implements DebugHooks {
  // Adapters the backend chose, by podside session, until VS Code asks for them.
  private readonly adapters = new Map<string, AdapterSpec>();

  constructor(private readonly seam: Seam, private readonly backend: Backend) {}

  async resolve(_folder: string | undefined, configuration: DebugConfiguration): Promise<DebugConfiguration | undefined> {
    if (typeof configuration.podsideSessionId === "string") return configuration;
    if (configuration.type === undefined || configuration.runtime === undefined) {
      // F5 without launch.json: there is nothing to guess a target from.
      this.seam.showError("podside: add a \"Run with cluster context\" configuration to launch.json first");
      return undefined;
    }
    const launch = { mode: this.seam.setting("defaultMode", "mirror"), ...configuration };
    let resolved: Resolved;
    try {
      resolved = await this.backend.command<Resolved>("podside.resolveLaunch", launch);
    } catch (error) {
      this.seam.showError(oneLine(error));
      return undefined;
    }
    if (resolved.adapter !== null) this.adapters.set(resolved.sessionId, resolved.adapter);
    return resolved.debugConfiguration;
  }

  adapter(configuration: DebugConfiguration): AdapterSpec | undefined {
    const sessionId = configuration.podsideSessionId;
    return typeof sessionId === "string" ? this.adapters.get(sessionId) : undefined;
  }

  terminated(configuration: DebugConfiguration): void {
    const sessionId = configuration.podsideSessionId;
    if (typeof sessionId !== "string") return;
    this.adapters.delete(sessionId);
    this.backend.command("podside.stopSession", { sessionId }).catch((error: unknown) => this.seam.showError(oneLine(error)));
  }
}

/** Which launch template fits a program file. */
export function runtimeFor(program: string): string {
  if (/\.py$/.test(program)) return "python";
  if (/\.(c|m)?js$|\.ts$/.test(program)) return "node";
  if (/\.go$/.test(program)) return "go";
  return "command";
}
