import { ConsoleLogger, LogLevel } from '@nestjs/common';
import { redactDeep } from '../lib/errors/redact-deep';
import { redactMessage } from '../lib/errors/sync.errors';
import { logLevelsUpTo, ServiceConfig } from './service-config';

/**
 * The service's logger: Nest's console logger (text, or one JSON object per
 * line with `LOG_FORMAT=json`) at `LOG_LEVEL`, removing credentials from
 * every connection string in messages and stacks before they are written.
 */
export class ServiceLogger extends ConsoleLogger {
  protected override printMessages(
    messages: unknown[],
    context?: string,
    logLevel?: LogLevel,
    writeStreamType?: 'stdout' | 'stderr',
    errorStack?: unknown,
  ): void {
    super.printMessages(
      messages.map((m) => redactDeep(m)),
      context,
      logLevel,
      writeStreamType,
      typeof errorStack === 'string' ? redactMessage(errorStack) : errorStack,
    );
  }

  protected override printStackTrace(stack: string): void {
    super.printStackTrace(stack ? redactMessage(stack) : stack);
  }
}

export function createServiceLogger(
  config: Pick<ServiceConfig, 'logLevel' | 'logFormat'>,
): ServiceLogger {
  const json = config.logFormat === 'json';
  return new ServiceLogger({
    logLevels: logLevelsUpTo(config.logLevel),
    json,
    colors: !json && !!process.stdout.isTTY,
    prefix: 'BidirectionalSync',
  });
}
