// A flow's performance dashboard: per node counts and the delivery funnel, polled with the
// FlowPerformance query or kept live by the FlowPerformanceUpdated subscription.
import type {
  FlowPerformanceQuery,
  FlowPerformanceUpdatedSubscription,
  NodeCountsFragment,
  PerformanceFragment,
  RunStatus,
} from "./generated/graphql.js";

export type Funnel = NodeCountsFragment["messages"];

/** The funnel of every message of the flow: each node's funnel added up, errors by code. */
export interface FunnelTotals {
  queued: number;
  sent: number;
  delivered: number;
  read: number;
  failed: number;
  errors: Map<string, number>;
}

export function funnelTotal(nodes: readonly NodeCountsFragment[]): FunnelTotals {
  const total: FunnelTotals = { queued: 0, sent: 0, delivered: 0, read: 0, failed: 0, errors: new Map() };
  for (const { messages } of nodes) {
    total.queued += messages.queued;
    total.sent += messages.sent;
    total.delivered += messages.delivered;
    total.read += messages.read;
    total.failed += messages.failed;
    for (const error of messages.errors) total.errors.set(error.key, (total.errors.get(error.key) ?? 0) + error.count);
  }
  return total;
}

/** Each stage as a share of the messages queued (null when nothing was queued). */
export function funnelRates(funnel: Funnel | FunnelTotals): { sent: number; delivered: number; read: number; failed: number } | null {
  if (funnel.queued === 0) return null;
  const share = (count: number): number => count / funnel.queued;
  return { sent: share(funnel.sent), delivered: share(funnel.delivered), read: share(funnel.read), failed: share(funnel.failed) };
}

/** Where customers stop answering: the share of waits at a node that ended by the no-reply timer. */
export function silenceRate(node: NodeCountsFragment): number | null {
  return node.waited === 0 ? null : node.noReply / node.waited;
}

/** The buttons of a node, most pressed first, with their share of the presses. */
export function buttonShares(node: NodeCountsFragment): Array<{ button: string; count: number; share: number }> {
  const presses = node.buttons.reduce((sum, button) => sum + button.count, 0);
  return [...node.buttons]
    .sort((a, b) => b.count - a.count)
    .map((button) => ({ button: button.key, count: button.count, share: presses === 0 ? 0 : button.count / presses }));
}

/** The nodes where runs fail, worst first, with their most frequent failure code. */
export function failingNodes(analytics: PerformanceFragment): Array<{ node: string; failed: number; topCode: string | null }> {
  return analytics.nodes
    .filter((node) => node.failed > 0)
    .sort((a, b) => b.failed - a.failed)
    .map((node) => ({
      node: node.nodeId,
      failed: node.failed,
      topCode: [...node.failures].sort((a, b) => b.count - a.count)[0]?.key ?? null,
    }));
}

/** Runs ended, by status then reason (COMPLETED/completed, FAILED/WINDOW_CLOSED...). */
export function endings(analytics: PerformanceFragment): Map<RunStatus, Map<string, number>> {
  const byStatus = new Map<RunStatus, Map<string, number>>();
  for (const ending of analytics.endings) {
    const reasons = byStatus.get(ending.status) ?? new Map<string, number>();
    reasons.set(ending.reason, (reasons.get(ending.reason) ?? 0) + ending.count);
    byStatus.set(ending.status, reasons);
  }
  return byStatus;
}

/** The headline numbers of the dashboard. */
export function summary(analytics: PerformanceFragment): { started: number; completion: number | null; stillRunning: number } {
  const ended = analytics.runsCompleted + analytics.runsFailed + analytics.runsCancelled;
  return {
    started: analytics.runsStarted,
    completion: analytics.runsStarted === 0 ? null : analytics.runsCompleted / analytics.runsStarted,
    stillRunning: Math.max(0, analytics.runsStarted - ended),
  };
}

/** The polled answer and the live one have the same shape (the Performance fragment). */
export function fromPoll(result: FlowPerformanceQuery): PerformanceFragment {
  return result.flowAnalytics;
}

/** The dashboard's state after a subscription event: events of another flow or version are ignored. */
export function applyUpdate(current: PerformanceFragment | null, event: FlowPerformanceUpdatedSubscription): PerformanceFragment | null {
  const next = event.flowAnalyticsUpdated;
  if (current !== null && (next.flowId !== current.flowId || next.version !== current.version)) return current;
  return next;
}
