import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  Inject,
  Injectable,
  Optional,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { ResolvedSyncApiConfig } from '../sync-api.config';
import { SYNC_API_CONFIG, SYNC_API_GUARD, SYNC_API_KEY_HEADER } from '../sync-api.constants';
import { SyncApiAccess } from './sync-api-access.decorator';

interface RequestWithHeaders {
  headers: Record<string, string | string[] | undefined>;
}

const sha256 = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/**
 * Guards the sync API:
 * - with a host guard (`SYNC_API_GUARD`), that guard decides everything;
 * - `write` endpoints need the API key; without a configured key they are refused (403);
 * - `read` endpoints need it only with `protectReads`; `public` ones never do.
 * The key comes from `x-api-key` or `Authorization: Bearer`; a missing or wrong key is 401.
 * Keys are compared as SHA-256 digests with `timingSafeEqual` (constant time, any length).
 */
@Injectable()
export class SyncApiKeyGuard implements CanActivate {
  private readonly keyDigest?: Buffer;

  constructor(
    @Inject(SYNC_API_CONFIG) private readonly config: ResolvedSyncApiConfig,
    private readonly reflector: Reflector,
    @Optional() @Inject(SYNC_API_GUARD) private readonly hostGuard?: CanActivate | null,
  ) {
    this.keyDigest = config.apiKey ? sha256(config.apiKey) : undefined;
  }

  canActivate(context: ExecutionContext) {
    if (this.hostGuard) return this.hostGuard.canActivate(context);
    const access =
      this.reflector.getAllAndOverride(SyncApiAccess, [context.getHandler(), context.getClass()]) ??
      'write';
    if (access === 'public') return true;
    if (access === 'read' && !this.config.protectReads) return true;
    if (!this.keyDigest) {
      throw new ForbiddenException(
        access === 'write'
          ? 'Changing sync state through the API is disabled: no API key is configured (set SYNC_API_KEY)'
          : 'Reads are protected (SYNC_API_PROTECT_READS) but no API key is configured (set SYNC_API_KEY)',
      );
    }
    const presented = presentedKey(context.switchToHttp().getRequest<RequestWithHeaders>());
    if (presented === undefined) {
      throw new UnauthorizedException(
        `API key required: send it in the ${SYNC_API_KEY_HEADER} header or as "Authorization: Bearer <key>"`,
      );
    }
    if (!timingSafeEqual(sha256(presented), this.keyDigest)) {
      throw new UnauthorizedException('Invalid API key');
    }
    return true;
  }
}

function presentedKey(request: RequestWithHeaders): string | undefined {
  const header = request.headers[SYNC_API_KEY_HEADER];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  if (fromHeader?.trim()) return fromHeader.trim();
  const authorization = request.headers.authorization;
  const auth = Array.isArray(authorization) ? authorization[0] : authorization;
  const match = auth?.match(/^Bearer\s+(.+)$/i);
  return match?.[1].trim() || undefined;
}
