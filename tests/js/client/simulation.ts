// An editor's chat preview: simulateFlow runs a flow document on a virtual clock for a simulated
// contact; the transcript is shown as a chat, the steps as a timeline with tags after each.
import type {
  ButtonKind,
  ShownButtonFragment,
  SimulateFlowQuery,
  SimulateFlowQueryVariables,
  SimulationInput,
} from "./generated/graphql.js";

export type Simulation = SimulateFlowQuery["simulateFlow"];
export type TranscriptMessage = Simulation["transcript"][number];
export type SimulatedStep = Simulation["steps"][number];

/** One thing the simulated customer does: after how long, and a text, a button tap or another kind. */
export type CustomerAction =
  | { readonly after: string; readonly text: string }
  | { readonly after: string; readonly button: string }
  | { readonly after: string; readonly kind: string };

/** The script as the API takes it: exactly one of text, button or kind per input. */
export function script(actions: readonly CustomerAction[]): SimulationInput[] {
  return actions.map((action) => ({
    after: action.after,
    text: "text" in action ? action.text : null,
    button: "button" in action ? action.button : null,
    kind: "kind" in action ? action.kind : null,
  }));
}

/** The variables of a SimulateFlow request for a draft the editor holds. */
export function simulationRequest(
  definition: unknown,
  actions: readonly CustomerAction[],
  contact: Record<string, unknown> | null = null,
): SimulateFlowQueryVariables {
  return { definition, contact, script: script(actions), trigger: null, startAt: null };
}

/** How a button reads in the preview, by kind (kinds added later fall back to their title). */
export function buttonLabel(button: ShownButtonFragment): string {
  const kind: ButtonKind = button.kind;
  switch (kind) {
    case "QUICK_REPLY":
      return button.number === null ? button.title : `${button.number}. ${button.title}`;
    case "URL":
      return `${button.title} -> ${button.url ?? "?"}`;
    case "CALL":
      return `${button.title} (call ${button.phoneNumber ?? "?"})`;
    case "COPY_CODE":
      return `${button.title}: ${button.code ?? "?"}`;
    default:
      return button.section === null ? button.title : `${button.section} / ${button.title}`;
  }
}

export interface Bubble {
  readonly side: "customer" | "business";
  readonly at: string;
  readonly lines: string[];
  readonly buttons: string[];
  readonly node: string | null;
}

/** The transcript as chat bubbles: what the customer would see, rendered as in the sandbox. */
export function chatPreview(simulation: Simulation): Bubble[] {
  return simulation.transcript.map((message: TranscriptMessage) => {
    if (message.direction === "IN") {
      return { side: "customer", at: message.at, lines: [message.text], buttons: [], node: null };
    }
    const { header, body, footer, cards } = message.rendered;
    const lines = [header?.text ?? (header === null ? null : `[${header.kind}]`), body, footer].filter(
      (line): line is string => line !== null && line !== "",
    );
    for (const card of cards) lines.push(card.body ?? (card.header === null ? "[card]" : `[${card.header.kind}]`));
    const buttons = [...message.rendered.buttons, ...cards.flatMap((card) => card.buttons)].map(buttonLabel);
    if (message.rendered.asList && message.rendered.listButton !== null) buttons.unshift(`[${message.rendered.listButton}]`);
    return { side: "business", at: message.at, lines: lines.length > 0 ? lines : [message.text], buttons, node: message.node };
  });
}

/** The tags each step added or removed (the contact's tags are given after every step). */
export function tagChanges(steps: readonly SimulatedStep[]): Array<{ at: string; node: string | null; added: string[]; removed: string[] }> {
  let before = new Set<string>();
  const changes: Array<{ at: string; node: string | null; added: string[]; removed: string[] }> = [];
  for (const step of steps) {
    const after = new Set(step.tags);
    const added = step.tags.filter((tag) => !before.has(tag));
    const removed = [...before].filter((tag) => !after.has(tag));
    if (added.length > 0 || removed.length > 0) changes.push({ at: step.at, node: step.node, added, removed });
    before = after;
  }
  return changes;
}

/** Virtual time the script spanned, in hours (days of waiting fast-forwarded). */
export function virtualHours(simulation: Simulation): number {
  return (Date.parse(simulation.endedAt) - Date.parse(simulation.startedAt)) / 3_600_000;
}

/** The editor's verdict line: where and why the conversation ended, or what it still waits for. */
export function verdict(simulation: Simulation): string {
  const warnings = simulation.issues.filter((issue) => issue.severity === "WARNING").length;
  const note = `${simulation.turns} turns${simulation.stopped === null ? "" : `, stopped: ${simulation.stopped}`}, ${warnings} warnings`;
  const end = simulation.end;
  if (end === null) return `no run (${note})`;
  const where = end.node === null ? end.flowName : `${end.flowName} at ${end.node}`;
  if (end.at === null) return `${where} waits: ${end.why} (${note})`;
  return `${end.status} ${end.reason ?? ""} ${where}: ${end.why} (${note})`.replace(/\s+/g, " ");
}
