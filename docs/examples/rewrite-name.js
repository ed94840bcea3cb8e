// Resolves one name as another (CoreDNS's `rewrite name`): the stages after it see the new
// question; the client gets its own question back, and its name on the records.
const FROM = 'www.example.org';
const TO = Buffer.from('\x03foo\x04test\x00', 'latin1'); // foo.test on the wire

export default function createStage() {
  return {
    name: 'rewrite-name',
    handle(ctx, next) {
      const q = ctx.query;
      if (q.name === FROM) {
        // Header and everything after QNAME (type, class, OPT) as the client sent them.
        const raw = ctx.raw;
        ctx.rewriteQuery('rewrite-name', Buffer.concat([raw.subarray(0, 12), TO, raw.subarray(q.questionEnd - 4)]));
      }
      return next();
    },
  };
}
