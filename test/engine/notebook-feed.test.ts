/** The notebook feed's bounded backlog: resume, resync, and the cap across notebooks. */
import { describe, expect, it } from 'vitest';
import { NotebookFeed, type FeedEvent } from '../../src/engine/notebook-feed.ts';
import { MemoryEventBus } from '../../src/queue/memory-event-bus.ts';

const text = (n: number) => 'x'.repeat(n);

describe('NotebookFeed', () => {
  it('resumes after a kept event, and asks for a resync past the backlog', () => {
    const feed = new NotebookFeed(new MemoryEventBus(), { events: 10, bytes: 1 << 20, totalBytes: 1 << 30 });
    for (let i = 0; i < 25; i++) feed.publish('nb', { type: 'cell.stream', text: String(i) });
    const kept = feed.since('nb', 20) as FeedEvent[];
    expect(kept.map((e) => e.text)).toEqual(['20', '21', '22', '23', '24']);
    expect(feed.since('nb', 3)).toBe('resync');
    expect(feed.since('nb', 99)).toBe('resync'); // an id from before a restart
    expect(feed.since('other', 0)).toEqual([]);
  });

  it('delivers the backlog then live events once each, and tells a late follower to resync', () => {
    const feed = new NotebookFeed(new MemoryEventBus(), { events: 3, bytes: 1 << 20, totalBytes: 1 << 30 });
    for (let i = 1; i <= 5; i++) feed.publish('nb', { type: 't', n: i });
    const seen: number[] = [];
    let resyncs = 0;
    const stop = feed.follow(
      'nb',
      1,
      (e) => seen.push(e.n as number),
      () => resyncs++,
    );
    feed.publish('nb', { type: 't', n: 6 });
    stop();
    feed.publish('nb', { type: 't', n: 7 });
    expect(resyncs).toBe(1);
    expect(seen).toEqual([3, 4, 5, 6]);
    expect(feed.isFollowed('nb')).toBe(false);
  });

  it("holds a notebook's events back in order until the last hold is released", () => {
    const feed = new NotebookFeed(new MemoryEventBus());
    const seen: [number, number][] = [];
    feed.follow(
      'nb',
      0,
      (e) => seen.push([e.seq, e.n as number]),
      () => {},
    );
    const first = feed.hold('nb');
    feed.publish('nb', { type: 't', n: 1 });
    const second = feed.hold('nb');
    feed.publish('nb', { type: 't', n: 2 });
    feed.publish('other', { type: 't', n: 9 }); // another notebook is not held
    first();
    first(); // a release counts once
    expect(seen).toEqual([]);
    second();
    feed.publish('nb', { type: 't', n: 3 });
    expect(seen).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
  });

  it('keeps all notebooks together under the total cap, dropping the least recently active first', () => {
    const feed = new NotebookFeed(new MemoryEventBus(), { events: 100, bytes: 1 << 20, totalBytes: 10_000 });
    feed.publish('old', { type: 't', text: text(4000) });
    feed.publish('mid', { type: 't', text: text(4000) });
    feed.publish('new', { type: 't', text: text(4000) });
    expect(feed.since('old', 0)).toEqual([]);
    expect((feed.since('mid', 0) as FeedEvent[]).length).toBe(1);
    expect((feed.since('new', 0) as FeedEvent[]).length).toBe(1);
    // A client that had seen event 1 of 'old' missed nothing; numbering goes on.
    expect(feed.since('old', 1)).toEqual([]);
    feed.publish('old', { type: 't', text: 'again' });
    expect((feed.since('old', 1) as FeedEvent[]).map((e) => e.seq)).toEqual([2]);
  });
});
