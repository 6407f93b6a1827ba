/**
 * Starts one Kafka test broker in its own process, so its memory is not the measured command's:
 * prints `host:port` on stdout and serves until stdin closes.
 *
 *   node src/kafka-broker.ts
 */
import { startKafkaDouble } from '@bk/test-servers';

const broker = await startKafkaDouble();
process.stdout.write(`${broker.bootstrap}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void broker.stop().then(() => process.exit(0));
});
