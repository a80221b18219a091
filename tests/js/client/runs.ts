// A run's timeline: one type per step action (Step), the raw detail kept as unknown JSON.
import type { RunTimelineQuery, StepFieldsFragment } from "./generated/graphql.js";

export type Run = NonNullable<RunTimelineQuery["run"]>;

/** One line per step, from the typed fields of its action. */
export function describeStep(step: StepFieldsFragment): string {
  switch (step.__typename) {
    case "RunStarted":
      return `started ${step.flowName ?? ""}`.trim();
    case "ButtonPressed":
      return `pressed ${step.buttonId ?? "?"} (${step.matchedBy ?? "tap"})`;
    case "Replied":
      return `replied "${step.text ?? ""}" -> ${step.path ?? "?"}`;
    case "MessageSent":
    case "TemplateSent":
      return `sent ${step.message?.providerMessageId ?? step.messageId ?? "(queued)"}`;
    case "SendFailed":
      return `failed ${step.errorCode ?? "?"}: ${step.errorTitle ?? step.errorDetail ?? ""}`;
    case "MessageStatusChanged":
      return `${step.message?.providerMessageId ?? "?"} ${step.outcome}`;
    case "Tagged":
      return `tags +[${step.added.join(", ")}] -[${step.removed.join(", ")}]`;
    case "VariableSet":
      return `${step.field} = ${JSON.stringify(step.value)}`;
    case "VariableNotSet":
      return `${step.field} refused: ${step.why ?? ""}${asking(step.askingAgain, step.attempt)}`;
    case "FormNotSaved":
      return `form refused: ${step.why ?? ""}${asking(step.askingAgain, step.attempt)}`;
    case "Assigned":
      return `assigned to ${step.assignedAgent?.email ?? step.assignedAgentId ?? "?"}`;
    case "ConditionChecked":
      return `branch ${step.branch ?? "otherwise"}`;
    case "DelayStarted":
      return `waits until ${step.until ?? "?"}`;
    case "FlowConnected":
      return `continues in ${step.flowName ?? "?"}`;
    case "RunEnded":
      return `ended: ${step.reason ?? step.outcome}`;
    default: // every other action, and actions added later (OtherStep): the raw form
      return `${step.action} (${step.outcome}) ${detailKeys(step.detail).join(", ")}`.trim();
  }
}

/** Both invalid-value steps (the InvalidValue interface) say whether the question goes out again. */
function asking(node: string | null, attempt: number | null): string {
  return node ? ` (asking ${node} again, attempt ${attempt ?? "?"})` : "";
}

/** The keys of a step's raw detail: JSON is `unknown`, so it has to be checked before use. */
export function detailKeys(detail: unknown): string[] {
  return typeof detail === "object" && detail !== null ? Object.keys(detail) : [];
}

/** The sends Meta refused, matched by wamid: what a support dashboard lists. */
export function failedSends(run: Run): Array<{ wamid: string | null; code: string | null; title: string | null }> {
  return run.steps.flatMap((step) =>
    step.__typename === "SendFailed"
      ? [{ wamid: step.message?.providerMessageId ?? null, code: step.errorCode, title: step.errorTitle }]
      : [],
  );
}
