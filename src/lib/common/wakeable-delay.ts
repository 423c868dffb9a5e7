/** A delay that `wake()` ends early (a stop, or someone waiting on the loop that sleeps). */
export interface WakeableDelay {
  done: Promise<void>;
  wake(): void;
}

export function wakeableDelay(ms: number): WakeableDelay {
  let wake = (): void => undefined;
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  return { done, wake };
}
