/** Entry point: build the app from the environment and flags, listen, close cleanly on signals. */
import { buildApp } from './app.ts';
import { loadConfig } from './config.ts';
import { RuncellError } from './errors.ts';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

async function main(): Promise<void> {
  const config = loadConfig(process.env, process.argv.slice(2));
  if (!LOOPBACK.test(config.host)) {
    if (!config.authToken) {
      throw new RuncellError(
        'CONFIG_INVALID',
        `refusing to listen on ${config.host} without RUNCELL_AUTH_TOKEN`,
      );
    }
    if (config.sandbox === 'none') {
      throw new RuncellError(
        'CONFIG_INVALID',
        `refusing to listen on ${config.host} with the unsafe "none" sandbox`,
      );
    }
  }
  const app = await buildApp(config);
  let closing: Promise<void> | undefined;
  const shutdown = (signal: string) => {
    app.log.info({ signal }, 'shutting down');
    closing ??= app.close().then(
      () => process.exit(0),
      (err) => {
        app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  await app.listen({ host: config.host, port: config.port });
}

main().catch((err) => {
  const code = err instanceof RuncellError ? `${err.code}: ` : '';
  console.error(`runcell: ${code}${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
