import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { map, Observable } from 'rxjs';
import { redactDeep } from '../errors/redact-deep';

/** Last line of defence: no connection string with credentials leaves the API. */
@Injectable()
export class RedactResponseInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((body) => redactDeep(body)));
  }
}
