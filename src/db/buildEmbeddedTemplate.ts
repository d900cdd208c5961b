// The build's last step (`npm run build`): the initialized data folder a new embedded database starts from.
import { writeEmbeddedTemplate } from './embeddedTemplate.ts'

await writeEmbeddedTemplate()
