import test from 'ava';
import { createLogger } from '../../common/log.ts';

test('log lines are JSON with bound context, and secret-looking fields are redacted', (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => lines.push(l) }).with({ machine: 'ns/m1' });
  log.debug('hidden');
  log.info('claimed host', { host: '10.0.0.1', password: 'hunter2', err: new Error('boom') });
  t.is(lines.length, 1);
  const entry = JSON.parse(lines[0]!);
  t.like(entry, { level: 'info', msg: 'claimed host', machine: 'ns/m1', host: '10.0.0.1', password: '[redacted]' });
  t.deepEqual(entry.err, { name: 'Error', message: 'boom' });
  t.false(lines[0]!.includes('hunter2'));
});
