import { useEffect, useLayoutEffect, useRef } from "react";

// useLayoutEffect warns when rendered on a server (React 18); useEffect is fine there.
const useIsomorphicLayoutEffect = typeof window === "undefined" ? useEffect : useLayoutEffect;

/** A ref that always holds the latest committed value: callbacks read options
 *  through it, so changing a callback does not restart anything. */
export function useLatest<T>(value: T): { current: T } {
  const ref = useRef(value);
  useIsomorphicLayoutEffect(() => {
    ref.current = value;
  });
  return ref;
}
