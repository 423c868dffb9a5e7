import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsMongoId, IsOptional, IsString, Matches, Max, Min } from 'class-validator';

/** Query of `GET /dead-letters`. Unknown fields are rejected. */
export class DeadLettersQueryDto {
  @ApiPropertyOptional({ minimum: 1, maximum: 500, default: 50, description: 'Newest first' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit: number = 50;

  @ApiPropertyOptional({ minimum: 0, maximum: 100000, default: 0 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(100_000)
  offset: number = 0;

  @ApiPropertyOptional({
    example: 'menuitems',
    description: 'Only dead letters of this collection',
  })
  @IsOptional()
  @IsString()
  @Matches(/^[^$\0]{1,255}$/, {
    message: 'collection must be a collection name (1-255 characters, no $)',
  })
  collection?: string;
}

/** Path parameter of `POST /dead-letters/:id/retry` and `DELETE /dead-letters/:id`. */
export class DeadLetterIdDto {
  @ApiProperty({ example: '6560a1f2c3d4e5f6a7b8c9d0', description: 'The dead letter id' })
  @IsMongoId({ message: 'id must be a dead letter id (24 hexadecimal characters)' })
  id!: string;
}

export class DeadLetterEntryDto {
  @ApiProperty({ example: '6560a1f2c3d4e5f6a7b8c9d0' }) id!: string;
  @ApiProperty({ nullable: true, type: String, example: 'menuitems' }) collection!: string | null;
  @ApiProperty({ example: '123' }) documentId!: string;
  @ApiProperty({ nullable: true, type: String, example: 'update' }) operation!: string | null;
  @ApiProperty({ nullable: true, type: String }) version!: string | null;
  @ApiProperty({ nullable: true, type: String }) origin!: string | null;
  @ApiProperty({ example: 'MenuItem validation failed: price: must be at least 0' })
  error!: string;
  @ApiProperty({ nullable: true, type: String, example: 'ValidationError' })
  errorName!: string | null;
  @ApiProperty({ nullable: true, type: String, example: '2025-11-30T10:00:00Z' }) at!:
    string | null;
  @ApiProperty({ description: 'Whether it can be retried (it holds a versioned change)' })
  retryable!: boolean;
}

export class DeadLettersResponseDto {
  @ApiProperty({ description: 'Stored dead letters matching the filter' })
  totalDeadLetters!: number;
  @ApiProperty({ type: [DeadLetterEntryDto] }) deadLetters!: DeadLetterEntryDto[];
}

export class DeadLetterRetryResponseDto {
  @ApiProperty() success!: boolean;
  @ApiProperty({
    enum: ['applied', 'superseded', 'rejected'],
    description:
      '`applied`: the local database holds the change now; `superseded`: it holds a newer version; `rejected`: the host rejected it again (a new dead letter replaces this one)',
  })
  outcome!: 'applied' | 'superseded' | 'rejected';
  @ApiProperty() message!: string;
  @ApiPropertyOptional({ description: 'The new dead letter, when rejected again' })
  deadLetterId?: string;
}

export class DeadLetterDiscardResponseDto {
  @ApiProperty() success!: boolean;
  @ApiProperty() message!: string;
}
