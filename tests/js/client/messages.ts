// Matching messages to Meta and adding up their cost: the same delivery fields in and out.
import type { ConversationQuery, DeliveryFragment, SandboxOutboxQuery } from "./generated/graphql.js";

type ConversationMessage = NonNullable<ConversationQuery["conversation"]>["messages"][number];
type OutboxMessage = SandboxOutboxQuery["sandboxOutbox"][number];

/** The message Meta calls ``wamid`` (a status webhook's id), in or out. */
export function byWamid(messages: readonly DeliveryFragment[], wamid: string): DeliveryFragment | undefined {
  return messages.find((message) => message.providerMessageId === wamid);
}

/** What Meta charged (final pricing) and what is still only estimated, per currency. */
export function costs(messages: readonly DeliveryFragment[]): Map<string, { final: number; estimated: number }> {
  const totals = new Map<string, { final: number; estimated: number }>();
  for (const message of messages) {
    const cost = message.cost;
    if (cost === null || cost.amount === null) continue;
    const total = totals.get(cost.currency) ?? { final: 0, estimated: 0 };
    if (cost.final) total.final += cost.amount;
    else total.estimated += cost.amount;
    totals.set(cost.currency, total);
  }
  return totals;
}

/** A line of the inbox: who wrote, and why it failed when it did. */
export function inboxLine(message: ConversationMessage): string {
  const failure = message.errorCode === null ? "" : ` [${message.errorCode}: ${message.errorTitle ?? ""}]`;
  return `${message.direction === "IN" ? "<" : ">"} ${message.sender} ${message.text ?? ""}${failure}`;
}

/** The sandbox outbox grouped by run (null: an agent's messages). */
export function byRun(outbox: readonly OutboxMessage[]): Map<string | null, OutboxMessage[]> {
  const grouped = new Map<string | null, OutboxMessage[]>();
  for (const message of outbox) {
    grouped.set(message.runId, [...(grouped.get(message.runId) ?? []), message]);
  }
  return grouped;
}
