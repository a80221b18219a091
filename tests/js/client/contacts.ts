// A dashboard lists a segment page by page (cursor pagination with a total), and answers a
// data-subject request: export everything held about a contact, then erase it.
import type {
  ContactRowFragment,
  ContactsPageQuery,
  ContactsPageQueryVariables,
  EraseContactMutation,
  EraseContactMutationVariables,
  ExportContactQuery,
  ExportContactQueryVariables,
} from "./generated/graphql.js";

export type ContactsPage = ContactsPageQuery["contacts"];

/** Runs the ContactsPage query (the transport is the caller's: fetch, graphql-http, urql...). */
export type FetchContactsPage = (variables: ContactsPageQueryVariables) => Promise<ContactsPageQuery>;

/** Which contacts: a segment (the same JSON as conditions and broadcasts) and/or a name prefix. */
export interface ContactFilter {
  readonly segment: unknown;
  readonly search: string | null;
}

/** The pages of a listing, oldest contacts first, following `pageInfo.endCursor` to the end. */
export async function* contactPages(
  fetchPage: FetchContactsPage,
  filter: ContactFilter,
  pageSize: number,
): AsyncGenerator<ContactsPage, void, undefined> {
  let after: string | null = null;
  for (;;) {
    const variables: ContactsPageQueryVariables = { segment: filter.segment, search: filter.search, first: pageSize, after };
    const page: ContactsPage = (await fetchPage(variables)).contacts;
    yield page;
    if (!page.pageInfo.hasNextPage) return;
    const next = page.pageInfo.endCursor ?? page.edges.at(-1)?.cursor ?? null;
    if (next === null || next === after) throw new Error(`contacts: page after ${after ?? "the start"} has no cursor to go on`);
    after = next;
  }
}

/** Every contact of a listing and the total the server counted (they differ if contacts changed meanwhile). */
export async function allContacts(
  fetchPage: FetchContactsPage,
  filter: ContactFilter,
  pageSize = 200,
): Promise<{ contacts: ContactRowFragment[]; totalCount: number; complete: boolean }> {
  const contacts: ContactRowFragment[] = [];
  let totalCount = 0;
  for await (const page of contactPages(fetchPage, filter, pageSize)) {
    totalCount = page.totalCount;
    contacts.push(...page.edges.map((edge) => edge.node));
  }
  return { contacts, totalCount, complete: contacts.length === totalCount };
}

/** How a list row names a contact: not every customer shares a phone number (BSUID-only ones). */
export function displayName(contact: ContactRowFragment): string {
  return contact.name ?? contact.username ?? contact.phone ?? contact.bsuid ?? contact.id;
}

/** One row of the dashboard's table. */
export function contactRow(contact: ContactRowFragment): string {
  const owner = contact.assignedAgent === null ? "flows" : contact.assignedAgent.name;
  const consent = contact.optedIn ? "opted in" : "no opt-in";
  const window = contact.windowOpen ? "window open" : `last wrote ${contact.lastInboundAt ?? "never"}`;
  return `${displayName(contact)} [${contact.tags.join(", ")}] ${consent}, ${window}, owner ${owner} (v${contact.version})`;
}

/** "Page 2 of 7" from the total, the page size and how many rows came before. */
export function pagePosition(page: ContactsPage, before: number, pageSize: number): string {
  const pages = Math.max(1, Math.ceil(page.totalCount / pageSize));
  return `page ${Math.floor(before / pageSize) + 1} of ${pages} (${page.nodes.length} of ${page.totalCount})`;
}

export type ExportContact = (variables: ExportContactQueryVariables) => Promise<ExportContactQuery>;
export type EraseContact = (variables: EraseContactMutationVariables) => Promise<EraseContactMutation>;

/** A data-subject request: what is held is exported (the answer to the customer) before it is erased. */
export async function exportThenErase(
  id: string,
  exportContact: ExportContact,
  eraseContact: EraseContact,
): Promise<{ held: Record<string, unknown>; erased: boolean }> {
  const held = (await exportContact({ id })).exportContact; // JSON is unknown: check before use
  if (typeof held !== "object" || held === null || Array.isArray(held)) {
    throw new Error(`exportContact(${id}) did not answer an object; nothing erased`);
  }
  const erased: boolean = (await eraseContact({ id })).eraseContact;
  return { held: { ...held }, erased };
}
