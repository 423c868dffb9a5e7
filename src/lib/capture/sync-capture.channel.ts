import type { Connection } from 'mongoose';

/**
 * What the plugin shares with the module for one local connection: whether
 * it records writes (not once the module chose the change-stream capture)
 * and who to tell when a write was recorded.
 */
export class SyncCaptureChannel {
  /** Records until the module says the change stream captures this connection. */
  recording = true;
  private readonly listeners = new Set<() => void>();

  onRecorded(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  recorded(): void {
    for (const listener of this.listeners) listener();
  }
}

const channels = new WeakMap<Connection, SyncCaptureChannel>();

export function syncCaptureChannel(connection: Connection): SyncCaptureChannel {
  let channel = channels.get(connection);
  if (!channel) {
    channel = new SyncCaptureChannel();
    channels.set(connection, channel);
  }
  return channel;
}
