import test from 'ava';
import { describeLives, MemoryTrack } from '../../test/harness/soak-memory.ts';

function track(series: Array<[name: string, pid: number, mib: number[]]>): MemoryTrack {
  const t = new MemoryTrack();
  for (const [name, pid, mibs] of series)
    mibs.forEach((mib, minute) => t.samples.push({ at: minute * 60, name, pid, mib }));
  return t;
}

test('a flat long life passes; each restart is a life of its own', (t) => {
  const m = track([
    ['capbm-a', 10, Array.from({ length: 30 }, (_, i) => 140 + (i % 3))],
    ['capbm-b', 11, [90, 120, 130]],
    ['capbm-b', 12, [95, 125]],
  ]);
  t.is(m.verdict(), undefined);
  const lives = m.lives();
  t.is(lives.length, 3);
  t.is(lives[0]!.earlyMiB, 141);
  t.is(describeLives(lives).length, 1, 'only lives of five minutes or more are described');
});

test('growth within one long life is a leak, named with its figures', (t) => {
  const m = track([['capbm-a', 10, Array.from({ length: 30 }, (_, i) => 120 + i * 8)]]);
  t.regex(m.verdict() ?? '', /capbm-a \(pid 10\) grew from \d+ MiB .* to \d+ MiB .* over 29 minutes/);
});

test('growth that restarts hide is not judged, but the limit always is', (t) => {
  t.is(
    track([
      ['capbm-a', 1, [100, 200, 300]],
      ['capbm-a', 2, [100, 200, 300]],
    ]).verdict(),
    undefined,
  );
  t.regex(track([['capbm-a', 1, [100, 1100]]]).verdict() ?? '', /above the 1024 MiB limit/);
});
