// A query log (issue 11): one line per reply that leaves, memo hits and truncated UDP replies
// included. It only observes, so it says so and the UDP answer memo stays on.
export default function createStage(options, env) {
  return {
    name: 'query-log',
    observesOnly: true, // handle() only calls next(): the memo may answer repeats without it
    handle(ctx, next) {
      return next();
    },
    // After the send; ReplyInfo is built only because this stage has observe().
    observe(r) {
      env.logger.info(
        { client: `${r.client.address}#${r.client.port}`, transport: r.transport, id: r.id, name: r.name, type: r.qtype,
          rcode: r.rcode, answers: r.answers, by: r.answeredBy, tc: r.truncated, memo: r.memo, us: r.durationUs },
        'reply',
      );
    },
  };
}
