/**
 * Client-chosen ids (notebookId, cellId) become parts of paths and keys, so they are limited to
 * a safe alphabet and length, and may not be `.` or `..`. The API schemas use ID_PATTERN; the
 * engine checks again before touching the file system.
 */
export const ID_PATTERN = '^(?!\\.{1,2}$)[A-Za-z0-9._:-]{1,128}$';
const ID_REGEX = new RegExp(ID_PATTERN);

export const isSafeId = (id: string): boolean => ID_REGEX.test(id) && !id.includes('/');
