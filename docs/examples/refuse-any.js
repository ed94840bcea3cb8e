// Example user stage (docs/stages.md): refuses ANY queries, as RFC 8482 allows, and logs answers
// slower than 100 ms. Listed in linedns.json's "pipeline" as "./refuse-any.js".

const ANY = 255;
const REFUSED = 5;

export default function createStage(options, env) {
  const refused = env.metrics.counter('refuse_any_total', 'ANY queries refused');
  return {
    name: 'refuse-any',
    async handle(ctx, next) {
      if (ctx.query.qtype === ANY) {
        refused.value++;
        ctx.respondError('refuse-any', REFUSED); // answer and stop: later stages never run
        return;
      }
      const started = performance.now();
      await next(); // the rest of the pipeline answers
      const ms = performance.now() - started;
      if (ms > 100) env.logger.warn({ name: ctx.query.name, ms, by: ctx.answeredBy }, 'slow answer');
    },
  };
}
