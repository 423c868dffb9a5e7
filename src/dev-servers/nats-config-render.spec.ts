import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { natsConfigString, renderNatsConfig } from './nats-config-render';

describe('renderNatsConfig', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nats-render-'));
    writeFileSync(
      join(dir, 'accounts.conf'),
      'accounts { A { users: [{ user: a, password: $P }] } }\n',
    );
    writeFileSync(
      join(dir, 'server.conf'),
      [
        'port: 4222',
        'jetstream {',
        '  store_dir: "./data"',
        '  max_file_store: 1GB',
        '}',
        'cluster {',
        '  port: 6222',
        '  routes: [',
        '    "nats-route://127.0.0.1:6222"',
        '  ]',
        '}',
        'include ./accounts.conf',
      ].join('\n'),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces values by path, arrays included, and inlines includes', () => {
    const text = renderNatsConfig(join(dir, 'server.conf'), {
      port: 5000,
      'jetstream.store_dir': '/tmp/x',
      'cluster.port': 7000,
      'cluster.routes': ['nats-route://127.0.0.1:7000', 'nats-route://127.0.0.1:7001'],
    });
    expect(text).toMatch(/^port: 5000$/m);
    expect(text).toMatch(/^ {2}store_dir: "\/tmp\/x"$/m);
    expect(text).toMatch(/^ {2}max_file_store: 1GB$/m);
    expect(text).toMatch(/^ {2}port: 7000$/m);
    expect(text).toContain(
      'routes: ["nats-route://127.0.0.1:7000", "nats-route://127.0.0.1:7001"]',
    );
    expect(text).not.toContain('6222');
    expect(text).not.toContain('include');
    expect(text).toContain('password: $P');
  });

  it('fails when a value to replace is not in the file', () => {
    expect(() => renderNatsConfig(join(dir, 'server.conf'), { 'jetstream.port': 1 })).toThrow(
      /has no jetstream\.port/,
    );
  });

  it('quotes environment values so nats-server reads them as strings', () => {
    expect(natsConfigString('12345')).toBe('"12345"');
    expect(natsConfigString('a"b')).toBe('"a\\"b"');
  });
});
