// The steps journal a rendered script appends to (<stateDir>/<instance>/steps/journal): one line per
// step start and end, "<id> <frequency> start|done|fail". Reading it tells whether a step that must
// run once started again after it was done, which the step markers exist to prevent. Pure.

export interface StepRerun {
  step: string;
  /** 1-based line of the journal where the second start is. */
  line: number;
}

/** Every once-step that started again after a `done` of its own, in journal order. */
export function stepsRunAgain(journal: string): StepRerun[] {
  const done = new Set<string>();
  const again: StepRerun[] = [];
  journal.split('\n').forEach((text, i) => {
    const [step, frequency, event] = text.trim().split(/\s+/);
    if (!step || frequency !== 'once') return;
    if (event === 'done') done.add(step);
    else if (event === 'start' && done.has(step)) again.push({ step, line: i + 1 });
  });
  return again;
}
