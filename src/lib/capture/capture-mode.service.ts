import { InjectSyncConfig } from '../bidirectional-sync.decorators';
import { Injectable, Logger } from '@nestjs/common';
import { ResolvedSyncConfig } from '../config/sync-config';
import type { LocalCaptureMode } from '../config/sync-options.interface';
import { SyncStoresService } from '../metadata/sync-stores.service';
import { DirtyMarkerCaptureService } from './dirty-marker-capture.service';
import type { LocalCapture } from './local-capture.interface';
import { LocalChangeCaptureService } from './local-change-capture.service';
import { syncCaptureChannel, syncCapturePlugin } from './sync-capture.plugin';

/**
 * Chooses how local writes are captured (`SYNC_LOCAL_CAPTURE`): `auto` takes
 * the change stream when the local server is a replica set (`hello` has
 * `setName`, or it is a mongos) and the Mongoose plugin otherwise, since a
 * standalone server refuses change streams (error 40573). Every process
 * resolves it at start, standbys too: the plugin records writes only in
 * plugin mode.
 */
@Injectable()
export class CaptureModeService {
  private readonly logger = new Logger(CaptureModeService.name);
  private chosen?: Promise<LocalCaptureMode>;
  private current?: LocalCaptureMode;

  constructor(
    @InjectSyncConfig() private readonly config: ResolvedSyncConfig,
    private readonly stores: SyncStoresService,
    private readonly streamCapture: LocalChangeCaptureService,
    private readonly markerCapture: DirtyMarkerCaptureService,
  ) {}

  /** The capture of the chosen mode (the change stream until a mode is chosen). */
  get active(): LocalCapture {
    return this.current === 'mongoose-plugin' ? this.markerCapture : this.streamCapture;
  }

  /** The mode in use, once resolved. */
  get mode(): LocalCaptureMode | undefined {
    return this.current;
  }

  resolve(): Promise<LocalCaptureMode> {
    this.chosen ??= this.choose().catch((err: unknown) => {
      this.chosen = undefined; // asked again at the next start
      throw err;
    });
    return this.chosen;
  }

  private async choose(): Promise<LocalCaptureMode> {
    const setting = this.config.localCapture;
    let mode: LocalCaptureMode;
    let reason: string;
    if (setting !== 'auto') {
      mode = setting;
      reason = `SYNC_LOCAL_CAPTURE=${setting}`;
    } else {
      const hello = await this.stores.local.command({ hello: 1 });
      if (hello.setName || hello.msg === 'isdbgrid') {
        mode = 'change-stream';
        reason = hello.setName
          ? `the local server is a member of replica set "${hello.setName}"`
          : 'the local server is a mongos';
      } else {
        mode = 'mongoose-plugin';
        reason =
          'the local server is standalone (no setName in hello), which has no change streams';
      }
    }
    syncCaptureChannel(this.stores.connection).recording = mode === 'mongoose-plugin';
    this.current = mode;
    this.logger.log(`Local capture: ${mode} (${reason})`);
    if (mode === 'mongoose-plugin') this.warnAboutUncapturedModels();
    return mode;
  }

  /** Plugin mode sees model writes only: say which synced models it cannot see. */
  private warnAboutUncapturedModels(): void {
    const connection = this.stores.connection;
    const models = connection.modelNames().map((name) => connection.model(name));
    const synced = models.filter((m) => this.config.pushesCollection(m.collection.collectionName));
    const without = synced.filter(
      (m) =>
        !(m.schema as unknown as { plugins: { fn: unknown }[] }).plugins.some(
          (p) => p.fn === syncCapturePlugin,
        ),
    );
    if (!synced.length || without.length === synced.length)
      this.logger.warn(
        'No model of the local connection has syncCapturePlugin: local writes are NOT captured. Apply it with connection.plugin(syncCapturePlugin) before models are compiled (see the README).',
      );
    else if (without.length)
      this.logger.warn(
        `Writes through ${without.map((m) => m.modelName).join(', ')} are not captured: their schemas lack syncCapturePlugin`,
      );
    this.logger.log('Plugin capture: writes made with the driver directly are not captured');
  }
}
