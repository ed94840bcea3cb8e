// URL sources: records, smartLine, zones and rewriteFrom may name an http(s) URL. The loader stays
// synchronous: src/app/sources.ts fetches each document first and hands the bytes in here.

/** A fetched document, or why there is none (the fetch failed and no last good copy exists). */
export type SourceDocument = { readonly bytes: Buffer } | { readonly error: string };

/** The documents of the URL sources, by URL as written. */
export type SourceDocuments = ReadonlyMap<string, SourceDocument>;

export function isSourceUrl(p: string): boolean {
  return /^https?:\/\//i.test(p);
}

/**
 * The bytes of `url`, or the reason there are none. A loader given no documents (`linedns
 * check`, a library caller) has not fetched anything: said so rather than fetched behind its back.
 */
export function sourceBytes(url: string, documents: SourceDocuments | undefined): Buffer | string {
  const d = documents?.get(url);
  if (d === undefined) return 'not fetched (URL sources are fetched by the server at start and when polled)';
  return 'bytes' in d ? d.bytes : d.error;
}
