// A flow editor reads the typed flow document (Flow.definition): one type per node kind.
import type { FlowDocumentQuery, NodeFragment } from "./generated/graphql.js";

export type FlowDocument = NonNullable<NonNullable<FlowDocumentQuery["flow"]>["definition"]>;

export interface Edge {
  readonly label: string;
  readonly to: string | null; // null ends the run
}

/** Where a node can lead, labelled as the editor draws it, from the typed fields of its kind. */
export function edgesOf(node: NodeFragment): Edge[] {
  switch (node.__typename) {
    case "MessageNode":
    case "TemplateNode": {
      const edges: Edge[] = node.buttons.map((button) => ({ label: button.title ?? button.id, to: button.next }));
      if (node.onReply !== null) edges.push({ label: "reply", to: node.onReply });
      if (node.onOther !== null) edges.push({ label: "other", to: node.onOther });
      if (node.noReply !== null) edges.push({ label: `no reply in ${node.noReply.after}`, to: node.noReply.next });
      if (node.onFailure !== null) edges.push({ label: "send failed", to: node.onFailure });
      return [...edges, { label: "next", to: node.next }];
    }
    case "ConditionNode":
      return [
        ...node.branches.map((branch) => ({ label: branch.name, to: branch.next })),
        { label: "otherwise", to: node.otherwise },
      ];
    case "DelayNode":
      return [{ label: node.for !== null ? `after ${node.for}` : `at ${node.until ?? "?"}`, to: node.next }];
    case "SetVariableNode":
      return node.onInvalid !== null
        ? [{ label: "next", to: node.next }, { label: "invalid", to: node.onInvalid }]
        : [{ label: "next", to: node.next }];
    case "ConnectFlowNode":
      return [{ label: `starts ${node.flow}`, to: null }];
    default: // opt_in, tag, assign, and kinds added later: their next
      return [{ label: "next", to: node.next }];
  }
}

/** What a node says to the customer, for a preview: text, media caption, or the template used. */
export function preview(node: NodeFragment): string | null {
  switch (node.__typename) {
    case "MessageNode":
      return node.text ?? node.media?.caption ?? (node.media !== null ? `[${node.media.kind}]` : null);
    case "TemplateNode": {
      const header = node.params.header;
      const shown = header === null ? "" : `${header.text ?? header.url ?? header.value ?? ""} `;
      return `${shown}[${node.template}/${node.language}] ${node.params.body.join(" · ")}`;
    }
    case "SetVariableNode":
      return `${node.field} ← ${node.value?.from ?? "value"}`;
    default:
      return null;
  }
}

/** Node ids a document points at that it does not have (an editor's own check). */
export function danglingTargets(document: FlowDocument): string[] {
  const ids = new Set(document.nodes.map((node) => node.id));
  return document.nodes.flatMap((node) => edgesOf(node).map((edge) => edge.to)).filter(
    (to): to is string => to !== null && !ids.has(to),
  );
}
