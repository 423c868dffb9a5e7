import { ApiProperty } from '@nestjs/swagger';
import { IsBoolean, IsDefined } from 'class-validator';

/** Body of `POST /toggle`. Unknown fields are rejected. */
export class ToggleSyncDto {
  @ApiProperty({ example: true, description: 'Turn Atlas → Local sync on (true) or off (false)' })
  @IsDefined({ message: 'enabled is required' })
  @IsBoolean({ message: 'enabled must be a boolean (true or false)' })
  enabled!: boolean;
}
