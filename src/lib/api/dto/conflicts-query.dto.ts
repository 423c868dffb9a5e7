import { ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsISO8601, IsOptional, IsString, Matches, Max, Min } from 'class-validator';

/** Query of `GET /conflicts`. Unknown fields are rejected. */
export class ConflictsQueryDto {
  @ApiPropertyOptional({ minimum: 1, maximum: 500, default: 50, description: 'Newest first' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit: number = 50;

  @ApiPropertyOptional({
    minimum: 0,
    maximum: 100000,
    default: 0,
    description: 'Skip this many matching conflicts first (the next page: offset += limit)',
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(100_000)
  offset: number = 0;

  @ApiPropertyOptional({ example: 'menuitems', description: 'Only conflicts of this collection' })
  @IsOptional()
  @IsString()
  @Matches(/^[^$\0]{1,255}$/, {
    message: 'collection must be a collection name (1-255 characters, no $)',
  })
  collection?: string;

  @ApiPropertyOptional({
    example: '2025-11-30T00:00:00Z',
    description: 'Only conflicts resolved at or after this time (ISO 8601)',
  })
  @IsOptional()
  @IsISO8601(
    { strict: true },
    { message: 'since must be an ISO 8601 date, e.g. 2025-11-30T10:00:00Z' },
  )
  since?: string;
}
